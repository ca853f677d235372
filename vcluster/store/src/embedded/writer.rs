//! The embedded backend's single writer thread: group commit.
//!
//! Requests queue on a channel. The thread takes everything queued (up to a batch limit),
//! applies it in one redb write transaction, commits it with one fsync, and only then
//! answers each request and publishes the events. Concurrent writers therefore share an
//! fsync, and nothing is acknowledged or visible to watchers before it is durable. A storage
//! failure aborts the whole batch: every request in it fails and nothing of it is applied.
//!
//! The same thread expires leases (it sleeps until the nearest expiry) and compacts in
//! bounded steps between batches, so no other thread ever writes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::Durability;
use tokio::sync::oneshot;

use super::Shared;
use super::mvcc::{Applied, Writer, Written};
use crate::{Error, LeaseId, Result, Revision, Txn, TxnOutcome};

/// Revisions compacted per write transaction, so writers never wait long behind compaction.
const COMPACTION_STEP: u64 = 10_000;

pub(super) enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnOutcome>>),
    GrantLease(u64, oneshot::Sender<Result<LeaseId>>),
    RevokeLease(LeaseId, oneshot::Sender<Result<()>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

/// An answer held back until its batch is durable.
enum Reply {
    Txn(oneshot::Sender<Result<TxnOutcome>>, Result<TxnOutcome>),
    Lease(oneshot::Sender<Result<LeaseId>>, Result<LeaseId>),
    Unit(oneshot::Sender<Result<()>>, Result<()>),
}

impl Reply {
    fn send(self) {
        // A requester that went away no longer wants the answer; the write stands.
        let _ = match self {
            Reply::Txn(tx, r) => tx.send(r).map_err(drop),
            Reply::Lease(tx, r) => tx.send(r).map_err(drop),
            Reply::Unit(tx, r) => tx.send(r).map_err(drop),
        };
    }

    fn fail(self, cause: &str) {
        let err = || Error::backend(CommitFailed(cause.to_owned()));
        let _ = match self {
            Reply::Txn(tx, _) => tx.send(Err(err())).map_err(drop),
            Reply::Lease(tx, _) => tx.send(Err(err())).map_err(drop),
            Reply::Unit(tx, _) => tx.send(Err(err())).map_err(drop),
        };
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the write batch was not committed: {0}")]
struct CommitFailed(String);

pub(super) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

pub(super) struct WriterThread {
    shared: Arc<Shared>,
    requests: Receiver<Request>,
    max_batch: usize,
    /// (expiry in unix ms, lease): a lease may have been revoked or re-read since; the
    /// table is checked before acting.
    expiries: BinaryHeap<Reverse<(u64, LeaseId)>>,
    /// Compaction targets still being worked through, with who waits for them.
    compactions: Vec<(Revision, oneshot::Sender<Result<()>>)>,
}

/// The pending work of one batch, before commit.
struct Batch {
    replies: Vec<Reply>,
    written: Vec<Written>,
    expiries: Vec<(u64, LeaseId)>,
    compaction_done: bool,
}

impl WriterThread {
    pub(super) fn new(
        shared: Arc<Shared>,
        requests: Receiver<Request>,
        max_batch: usize,
        expiries: Vec<(u64, LeaseId)>,
    ) -> Self {
        Self {
            shared,
            requests,
            max_batch: max_batch.max(1),
            expiries: expiries.into_iter().map(Reverse).collect(),
            compactions: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let wait = if self.compactions.is_empty() {
                self.expiries
                    .peek()
                    .map(|Reverse((at, _))| Duration::from_millis(at.saturating_sub(now_ms())))
            } else {
                Some(Duration::ZERO)
            };
            let first = match wait {
                None => self.requests.recv().ok(),
                Some(wait) => match self.requests.recv_timeout(wait) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            if first.is_none() && wait.is_none() {
                return; // every sender is gone: the store was dropped
            }
            let mut requests: Vec<Request> = first.into_iter().collect();
            while requests.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            let now = now_ms();
            let mut due = Vec::new();
            while let Some(Reverse((at, lease))) = self.expiries.peek().copied()
                && at <= now
            {
                self.expiries.pop();
                due.push(lease);
            }
            if requests.is_empty() && due.is_empty() && self.compactions.is_empty() {
                continue;
            }
            self.commit(requests, due, now);
        }
    }

    fn commit(&mut self, requests: Vec<Request>, due: Vec<LeaseId>, now: u64) {
        let mut batch = Batch {
            replies: Vec::with_capacity(requests.len()),
            written: Vec::new(),
            expiries: Vec::new(),
            compaction_done: false,
        };
        match self.apply(requests, due, now, &mut batch) {
            Ok(revision) => {
                self.shared.revision.store(revision, Ordering::Release);
                self.shared.hub.publish(batch.written, revision);
                self.expiries
                    .extend(batch.expiries.into_iter().map(Reverse));
                if batch.compaction_done {
                    for (_, tx) in self.compactions.drain(..) {
                        let _ = tx.send(Ok(()));
                    }
                }
                for reply in batch.replies {
                    reply.send();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store: write batch failed, nothing of it was applied");
                let cause = e.to_string();
                for reply in batch.replies {
                    reply.fail(&cause);
                }
            }
        }
    }

    /// Applies one batch in one write transaction and commits it; the revision after it.
    fn apply(
        &mut self,
        requests: Vec<Request>,
        due: Vec<LeaseId>,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Revision> {
        let mut txn = self.shared.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(Error::backend)?;
        let mut writer = Writer::open(&txn)?;
        let keep = |batch: &mut Batch, applied: Option<Written>| {
            batch.written.extend(applied);
        };
        for request in requests {
            match request {
                Request::Txn(t, tx) => {
                    let (answer, written) = writer.txn(&t)?;
                    keep(batch, written);
                    batch.replies.push(Reply::Txn(tx, answer));
                }
                Request::GrantLease(ttl, tx) => {
                    let expires = now.saturating_add(ttl.saturating_mul(1000));
                    let lease = writer.grant_lease(ttl, expires)?;
                    batch.expiries.push((expires, lease));
                    batch.replies.push(Reply::Lease(tx, Ok(lease)));
                }
                Request::RevokeLease(lease, tx) => {
                    let (answer, written): (Result<()>, _) = writer.revoke_lease(lease)?;
                    keep(batch, written);
                    batch.replies.push(Reply::Unit(tx, answer));
                }
                Request::Compact(target, tx) => {
                    let current = writer.revision;
                    if target > current {
                        let e = Error::FutureRevision {
                            requested: target,
                            current,
                        };
                        batch.replies.push(Reply::Unit(tx, Err(e)));
                    } else {
                        self.compactions.push((target, tx));
                    }
                }
            }
        }
        for lease in due {
            // The lease may be gone (revoked) or renewed by a restart's reload; only an
            // expiry that is still recorded and past is acted on.
            if writer.lease_expiry(lease)?.is_some_and(|at| at <= now) {
                let applied: Applied<()> = writer.revoke_lease(lease);
                keep(batch, applied?.1);
            }
        }
        if let Some(target) = self.compactions.iter().map(|(t, _)| *t).max() {
            batch.compaction_done = writer.compact_step(target, COMPACTION_STEP)?;
        }
        let revision = writer.finish()?;
        txn.commit()?;
        Ok(revision)
    }
}
