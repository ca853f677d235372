//! The embedded backend's single writer thread: group commit.
//!
//! Requests queue on a channel. The thread takes everything queued (up to a batch limit),
//! applies it in one redb write transaction, commits it with one fsync, and only then
//! answers each request and publishes the events. Concurrent writers therefore share an
//! fsync, and nothing is acknowledged or visible to watchers before it is durable. A storage
//! failure aborts the whole batch: every request in it fails and nothing of it is applied.
//!
//! A batch is made durable by appending its changes to the write-ahead log (`wal.rs`) and
//! syncing that; redb itself commits without a sync, except at checkpoints (every
//! `checkpoint_interval`, when the log is full, and at shutdown), after which the log starts
//! over. This is etcd's own split between its WAL and its bbolt backend.
//!
//! The same thread expires leases (it sleeps until the nearest expiry) and compacts in
//! bounded steps between batches, so no other thread ever writes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::Durability;
use tokio::sync::oneshot;

use super::Shared;
use super::mvcc::{Applied, Writer, Written};
use super::wal::Wal;
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
    wal: Wal,
    /// The sequence number of the last batch applied.
    seq: u64,
    last_checkpoint: Instant,
    checkpoint_interval: Duration,
    /// Set when redb refused a batch the log already holds: memory and the log disagree,
    /// so no further write is accepted (a reopen recovers from the log).
    poisoned: Option<String>,
    /// The buffer each batch records its changes in, kept so that its memory is reused.
    redo: Vec<u8>,
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
        options: &super::EmbeddedOptions,
        wal: Wal,
        seq: u64,
        expiries: Vec<(u64, LeaseId)>,
    ) -> Self {
        Self {
            shared,
            requests,
            max_batch: options.max_batch.max(1),
            expiries: expiries.into_iter().map(Reverse).collect(),
            compactions: Vec::new(),
            wal,
            seq,
            last_checkpoint: Instant::now(),
            checkpoint_interval: options.checkpoint_interval,
            poisoned: None,
            redo: Vec::new(),
        }
    }

    /// How long until the log should be checkpointed, if it holds anything.
    fn checkpoint_in(&self) -> Option<Duration> {
        (!self.wal.is_empty()).then(|| {
            self.checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        })
    }

    pub(super) fn run(mut self) {
        loop {
            let wait = if self.compactions.is_empty() {
                let expiry = self
                    .expiries
                    .peek()
                    .map(|Reverse((at, _))| Duration::from_millis(at.saturating_sub(now_ms())));
                match (expiry, self.checkpoint_in()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            } else {
                Some(Duration::ZERO)
            };
            let first = match wait {
                None => self
                    .requests
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => self.requests.recv_timeout(wait),
            };
            let first = match first {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle is gone: leave a checkpointed file and an empty log.
                    if !self.wal.is_empty() {
                        self.commit(Vec::new(), Vec::new(), now_ms(), true);
                    }
                    return;
                }
            };
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
            let checkpoint = self.wal.is_full() || self.checkpoint_in() == Some(Duration::ZERO);
            if requests.is_empty() && due.is_empty() && self.compactions.is_empty() && !checkpoint {
                continue;
            }
            self.commit(requests, due, now, checkpoint);
        }
    }

    fn commit(&mut self, requests: Vec<Request>, due: Vec<LeaseId>, now: u64, checkpoint: bool) {
        let mut batch = Batch {
            replies: Vec::with_capacity(requests.len()),
            written: Vec::new(),
            expiries: Vec::new(),
            compaction_done: false,
        };
        let applied = match &self.poisoned {
            Some(cause) => Err(Error::backend(CommitFailed(cause.clone()))),
            None => self.apply(requests, due, now, checkpoint, &mut batch),
        };
        match applied {
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

    /// Applies one batch in one write transaction, makes it durable (in the log, or by a
    /// checkpoint) and commits it; the revision after it.
    fn apply(
        &mut self,
        requests: Vec<Request>,
        due: Vec<LeaseId>,
        now: u64,
        checkpoint: bool,
        batch: &mut Batch,
    ) -> Result<Revision> {
        let mut txn = self.shared.db.begin_write()?;
        let durability = if checkpoint {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(Error::backend)?;
        let mut writer = Writer::open(&txn, std::mem::take(&mut self.redo))?;
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
        if !checkpoint && !writer.has_changes() {
            // Only refused requests and failed compares: nothing to log or commit.
            return Ok(writer.revision);
        }
        let seq = self.seq + 1;
        let (revision, redo) = writer.finish(seq)?;
        if !checkpoint {
            // Durable from here on: a crash before the commit below is recovered from the log.
            self.wal.append(seq, &redo)?;
        }
        self.redo = redo;
        self.seq = seq;
        if let Err(e) = txn.commit() {
            if !checkpoint {
                self.poisoned = Some(format!("redb refused a logged batch: {e}"));
            }
            return Err(e.into());
        }
        if checkpoint {
            self.wal.reset();
            self.last_checkpoint = Instant::now();
        }
        Ok(revision)
    }
}
