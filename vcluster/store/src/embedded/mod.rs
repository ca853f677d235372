//! The embedded backend: one redb file on local disk.
//!
//! - `mvcc.rs`: the on-disk layout (every version of every key, keyed by revision) and the
//!   operations on it.
//! - `writer.rs`: the one writer thread, with group commit, lease expiry and compaction.
//! - `wal.rs`: the write-ahead log that makes each batch durable with one sequential sync.
//! - `hub.rs`: the bounded in-memory watch window and the watcher tasks.
//!
//! Reads run on the caller's thread against a redb read transaction (an MVCC snapshot that
//! never waits for the writer); they touch only redb's page cache in the common case.

mod hub;
mod mvcc;
mod wal;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use self::hub::Hub;
use self::mvcc::{KV, LEASES, META, META_COMPACTED, META_REVISION, META_WAL_SEQ, REVS};
use self::writer::{Request, WriterThread};
use crate::{
    Backend, Counted, Error, Event, KeyValue, LeaseId, RangePage, RangeRequest, Result, Revision,
    Store, Txn, TxnOutcome, WatchStream,
};

/// Tuning of the embedded backend.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions kept in memory for watchers; older ones are replayed from disk.
    pub watch_window_revisions: usize,
    /// Bytes of events kept in memory for watchers.
    pub watch_window_bytes: usize,
    /// Most requests committed together in one transaction (one fsync).
    pub max_batch: usize,
    /// Events buffered per watcher before the watcher waits for its consumer.
    pub watch_buffer: usize,
    /// Size of the write-ahead log; when it fills up, redb is checkpointed and it starts over.
    pub wal_bytes: u64,
    /// How often redb is checkpointed (made durable on its own) while writes come in.
    pub checkpoint_interval: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            watch_window_revisions: 50_000,
            watch_window_bytes: 64 << 20,
            max_batch: 1024,
            watch_buffer: 1024,
            wal_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// The embedded backend: the redb file at the path it is opened with, and its write-ahead
/// log beside it (`<path>-wal`). Dropping the last handle checkpoints, stops the writer
/// thread and closes the file; open watch streams then end with [`Error::Closed`].
pub struct Embedded {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<thread::JoinHandle<()>>,
    watch_buffer: usize,
}

pub(crate) struct Shared {
    db: Database,
    hub: Hub,
    /// The last committed revision.
    revision: AtomicU64,
}

impl Embedded {
    /// Opens (or creates) the store in the file at `path`.
    pub fn open(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let path = path.as_ref();
        let db = Database::create(path)?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let (mut wal, records) = wal::Wal::open(Path::new(&wal_path), options.wal_bytes)?;
        let (revision, seq, expiries) = {
            // Recovery: redb holds everything up to its last checkpoint; the log holds the
            // batches after it. Apply those and checkpoint, so the log can start over.
            let txn = db.begin_write()?;
            let mut writer = mvcc::Writer::open(&txn, Vec::new())?; // creates the tables of a new file
            let mut seq = writer.meta(META_WAL_SEQ)?;
            for (record_seq, redo) in records {
                if record_seq > seq {
                    writer.replay(&redo)?;
                    seq = record_seq;
                }
            }
            let (revision, _) = writer.finish(seq)?;
            let mut expiries = Vec::new();
            {
                let leases = txn.open_table(LEASES)?;
                for row in leases.iter()? {
                    let (id, v) = row?;
                    expiries.push((v.value().1, id.value()));
                }
            }
            txn.commit()?;
            (revision, seq, expiries)
        };
        wal.reset();
        let shared = Arc::new(Shared {
            db,
            hub: Hub::new(
                revision,
                options.watch_window_revisions,
                options.watch_window_bytes,
            ),
            revision: AtomicU64::new(revision),
        });
        let (tx, rx) = mpsc::channel();
        let thread = WriterThread::new(shared.clone(), rx, &options, wal, seq, expiries);
        let writer = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || thread.run())
            .map_err(Error::backend)?;
        Ok(Self {
            shared,
            requests: Some(tx),
            writer: Some(writer),
            watch_buffer: options.watch_buffer.max(1),
        })
    }

    async fn request<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .as_ref()
            .expect("the request channel lives until drop")
            .send(request(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("embedded store: the writer thread panicked");
        }
    }
}

/// A read snapshot with the revisions it is bounded by.
struct Snapshot {
    txn: ReadTransaction,
    current: Revision,
    compacted: Revision,
}

impl Shared {
    fn snapshot(&self) -> Result<Snapshot> {
        let txn = self.db.begin_read()?;
        let (current, compacted) = {
            let meta = txn.open_table(META)?;
            let get = |name| -> Result<u64> { Ok(meta.get(name)?.map_or(0, |v| v.value())) };
            (get(META_REVISION)?.max(1), get(META_COMPACTED)?)
        };
        Ok(Snapshot {
            txn,
            current,
            compacted,
        })
    }

    fn replay(&self, prefix: &[u8], after: Revision, until: Revision) -> Result<Vec<Event>> {
        let snap = self.snapshot()?;
        if after < snap.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: snap.compacted,
            });
        }
        let kv = snap.txn.open_table(KV)?;
        let revs = snap.txn.open_table(REVS)?;
        mvcc::replay(&kv, &revs, prefix, after, until)
    }
}

impl Snapshot {
    /// The revision to read at: `requested`, checked against what is retained, or the
    /// snapshot's own.
    fn at(&self, requested: Option<Revision>) -> Result<Revision> {
        match requested {
            None => Ok(self.current),
            Some(r) if r > self.current => Err(Error::FutureRevision {
                requested: r,
                current: self.current,
            }),
            Some(r) if r < self.compacted => Err(Error::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }
}

#[async_trait]
impl Store for Embedded {
    async fn get_at(&self, key: &[u8], revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let snap = self.shared.snapshot()?;
        let at = snap.at(revision)?;
        let kv = snap.txn.open_table(KV)?;
        mvcc::value_at(&kv, key, at)
    }

    async fn range(&self, request: RangeRequest) -> Result<RangePage> {
        request.validate()?;
        let snap = self.shared.snapshot()?;
        let at = snap.at(request.revision)?;
        let kv = snap.txn.open_table(KV)?;
        let limit = request.limit.unwrap_or(usize::MAX);
        let mut page = RangePage {
            revision: at,
            ..RangePage::default()
        };
        mvcc::scan(&kv, &request, at, |kv| {
            if page.kvs.len() == limit {
                page.more = true;
                page.remaining += 1;
                return request.count_remaining;
            }
            page.kvs.push(kv);
            true
        })?;
        if !request.count_remaining {
            page.remaining = 0;
        }
        Ok(page)
    }

    async fn count(&self, prefix: &[u8]) -> Result<Counted> {
        let snap = self.shared.snapshot()?;
        let kv = snap.txn.open_table(KV)?;
        let mut count = 0;
        mvcc::scan(
            &kv,
            &RangeRequest::prefix(Bytes::copy_from_slice(prefix)),
            snap.current,
            |_| {
                count += 1;
                true
            },
        )?;
        Ok(Counted {
            count,
            revision: snap.current,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        self.request(|tx| Request::Txn(txn, tx)).await
    }

    async fn watch(&self, prefix: &[u8], after: Revision) -> Result<WatchStream> {
        let (tx, rx) = tokio_mpsc::channel(self.watch_buffer);
        let compacted = self.shared.snapshot()?.compacted;
        if after < compacted {
            let _ = tx.try_send(Err(Error::Compacted {
                requested: after,
                compacted,
            }));
        } else {
            hub::spawn(&self.shared, Bytes::copy_from_slice(prefix), after, tx);
        }
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn grant_lease(&self, ttl_seconds: u64) -> Result<LeaseId> {
        if ttl_seconds == 0 {
            return Err(Error::InvalidArgument(
                "a lease needs a positive TTL".into(),
            ));
        }
        self.request(|tx| Request::GrantLease(ttl_seconds, tx))
            .await
    }
}

#[async_trait]
impl Backend for Embedded {
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.request(|tx| Request::Compact(revision, tx)).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.request(|tx| Request::RevokeLease(lease, tx)).await
    }
}

/// A receiver as a stream.
pub(crate) fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio_mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
