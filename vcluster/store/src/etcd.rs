//! The etcd backend: the store contract on a real etcd (3.4+) cluster.
//!
//! Revisions are etcd's own. Reads are retried while etcd is unreachable (they are
//! idempotent); writes are not, because a failed write's outcome is unknown and only the
//! caller can decide what a retry means. Each watch is a task that re-creates its etcd watch
//! from the last delivered revision whenever the connection drops, so a restarted member or
//! a lost connection costs latency, never an event.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, PutOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;
use tonic::Code;

use crate::embedded::tokio_stream_from;
use crate::store::Inconsistent;
use crate::{
    Backend, Condition, Counted, Error, Event, EventKind, KeyValue, LeaseId, Op, RangePage,
    RangeRequest, Result, Revision, Store, Txn, TxnOutcome, WatchStream, prefix_end,
};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the members, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    /// How long reads keep retrying while no member answers.
    pub retry_for: Duration,
    /// Events buffered per watcher before the watcher waits for its consumer.
    pub watch_buffer: usize,
}

impl EtcdOptions {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            watch_buffer: 1024,
        }
    }
}

/// The etcd backend. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    options: EtcdOptions,
}

/// Where etcd's compaction error leaves no revision, this key's watch from revision 1 makes
/// etcd name its compacted revision.
const PROBE_KEY: &[u8] = b"\0vcluster-store-compaction-probe";

impl Etcd {
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(map_err)?;
        Ok(Self { client, options })
    }

    /// Runs an idempotent request, retrying while etcd is unavailable.
    async fn read<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.retry_for;
        let mut backoff = Duration::from_millis(20);
        loop {
            match attempt(self.client.clone()).await.map_err(map_err) {
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "etcd read failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Turns etcd's revision errors into typed ones.
    async fn revision_error(&self, e: Error, requested: Revision) -> Error {
        let Error::Backend(source) = &e else {
            return e;
        };
        let message = source.to_string();
        if message.contains("required revision has been compacted") {
            return match self.compacted_revision().await {
                Ok(compacted) => Error::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            };
        }
        if message.contains("required revision is a future revision") {
            return match self.current_revision().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            };
        }
        e
    }

    /// etcd's compacted revision, which it only names in a watch that starts before it.
    async fn compacted_revision(&self) -> Result<Revision> {
        let probe = async {
            let mut client = self.client.clone();
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = client.watch(PROBE_KEY, Some(options)).await?;
            loop {
                match stream.message().await? {
                    Some(resp) if resp.compact_revision() > 0 => {
                        return Ok(rev(resp.compact_revision()));
                    }
                    Some(_) => {}
                    None => return Err(etcd_client::Error::WatchError("stream ended".into())),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(Error::backend(Inconsistent(
                "etcd reported a compaction but named no compacted revision",
            ))),
        }
    }
}

fn rev(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

fn etcd_rev(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

fn map_err(e: etcd_client::Error) -> Error {
    match &e {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Error::Unavailable(Box::new(e))
            }
            // A broken connection surfaces as `Unknown` carrying a transport error, or (a
            // member killed mid-request) an h2 error over an I/O error such as a reset; lost
            // leadership as `Unknown` naming the leader.
            Code::Unknown if broken_connection(status) || status.message().contains("leader") => {
                Error::Unavailable(Box::new(e))
            }
            // etcd measures the whole request, a little more than `Txn::validate` counts.
            Code::InvalidArgument if status.message() == "etcdserver: request is too large" => {
                Error::TooLarge {
                    limit: crate::MAX_REQUEST_BYTES,
                }
            }
            _ => Error::backend(e),
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Error::Unavailable(Box::new(e))
        }
        _ => Error::backend(e),
    }
}

/// Whether a status's causes show a connection that broke: a transport error, or an I/O
/// error anywhere down the chain.
fn broken_connection(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn from_etcd(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(kv.key()),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: rev(kv.create_revision()),
        mod_revision: rev(kv.mod_revision()),
        version: rev(kv.version()),
        lease: (kv.lease() != 0).then(|| rev(kv.lease())),
    }
}

/// etcd's range end for every key under `prefix`: `"\0"` means "to the end of the keyspace".
fn range_end(prefix: &[u8]) -> Vec<u8> {
    prefix_end(prefix).unwrap_or_else(|| vec![0])
}

#[async_trait]
impl Store for Etcd {
    async fn get_at(&self, key: &[u8], revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let mut options = GetOptions::new();
        if let Some(r) = revision {
            options = options.with_revision(etcd_rev(r));
        }
        let result = self
            .read(|mut c| {
                let options = options.clone();
                async move { c.get(key, Some(options)).await }
            })
            .await;
        match result {
            Ok(resp) => Ok(resp.kvs().first().map(from_etcd)),
            Err(e) => Err(self.revision_error(e, revision.unwrap_or(0)).await),
        }
    }

    async fn range(&self, request: RangeRequest) -> Result<RangePage> {
        request.validate()?;
        let start = match &request.start_after {
            Some(after) => [&after[..], &[0]].concat(),
            None if request.prefix.is_empty() => vec![0],
            None => request.prefix.to_vec(),
        };
        let mut options = GetOptions::new().with_range(range_end(&request.prefix));
        if let Some(limit) = request.limit {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(r) = request.revision {
            options = options.with_revision(etcd_rev(r));
        }
        let result = self
            .read(|mut c| {
                let (start, options) = (start.clone(), options.clone());
                async move { c.get(start, Some(options)).await }
            })
            .await;
        match result {
            Ok(resp) => Ok(RangePage {
                kvs: resp.kvs().iter().map(from_etcd).collect(),
                more: resp.more(),
                // etcd counts every key of the range from the start, the page's included.
                remaining: if request.count_remaining {
                    rev(resp.count()).saturating_sub(resp.kvs().len() as u64)
                } else {
                    0
                },
                revision: match request.revision {
                    Some(r) => r,
                    None => rev(resp.header().map_or(0, |h| h.revision())),
                },
            }),
            Err(e) => Err(self.revision_error(e, request.revision.unwrap_or(0)).await),
        }
    }

    async fn count(&self, prefix: &[u8]) -> Result<Counted> {
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        let options = GetOptions::new()
            .with_range(range_end(prefix))
            .with_count_only();
        let resp = self
            .read(|mut c| {
                let (start, options) = (start.clone(), options.clone());
                async move { c.get(start, Some(options)).await }
            })
            .await?;
        Ok(Counted {
            count: rev(resp.count()),
            revision: rev(resp.header().map_or(0, |h| h.revision())),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| {
                let key = c.key.to_vec();
                match c.condition {
                    Condition::Absent => EtcdCompare::create_revision(key, CompareOp::Equal, 0),
                    Condition::Exists => EtcdCompare::create_revision(key, CompareOp::Greater, 0),
                    Condition::ModRevision(r) => {
                        EtcdCompare::mod_revision(key, CompareOp::Equal, etcd_rev(r))
                    }
                }
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let mut options = PutOptions::new().with_prev_key();
                    if let Some(lease) = lease {
                        options = options.with_lease(etcd_rev(*lease));
                    }
                    TxnOp::put(key.to_vec(), value.to_vec(), Some(options))
                }
                Op::Delete { key } => {
                    TxnOp::delete(key.to_vec(), Some(DeleteOptions::new().with_prev_key()))
                }
            })
            .collect();
        let on_failure: Vec<TxnOp> = txn
            .compares
            .iter()
            .map(|c| TxnOp::get(c.key.to_vec(), None))
            .collect();
        let request = EtcdTxn::new()
            .when(compares)
            .and_then(ops)
            .or_else(on_failure);
        let resp = match self.client.kv_client().txn(request).await {
            Ok(resp) => resp,
            Err(e) => {
                let e = map_err(e);
                // etcd names no lease in its error; the transaction's leases say which.
                if let Error::Backend(source) = &e
                    && source.to_string().contains("requested lease not found")
                    && let Some(lease) = txn.ops.iter().find_map(|op| match op {
                        Op::Put { lease, .. } => *lease,
                        Op::Delete { .. } => None,
                    })
                {
                    return Err(Error::LeaseNotFound(lease));
                }
                return Err(e);
            }
        };
        let revision = rev(resp.header().map_or(0, |h| h.revision()));
        let answers = resp.op_responses();
        if resp.succeeded() {
            let prev = answers
                .iter()
                .map(|answer| match answer {
                    TxnOpResponse::Put(put) => put.prev_key().map(from_etcd),
                    TxnOpResponse::Delete(del) => del.prev_kvs().first().map(from_etcd),
                    _ => None,
                })
                .collect();
            Ok(TxnOutcome::Committed { revision, prev })
        } else {
            let current = answers
                .iter()
                .map(|answer| match answer {
                    TxnOpResponse::Get(get) => get.kvs().first().map(from_etcd),
                    _ => None,
                })
                .collect();
            Ok(TxnOutcome::Failed { current })
        }
    }

    async fn watch(&self, prefix: &[u8], after: Revision) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(self.options.watch_buffer.max(1));
        tokio::spawn(watch_task(self.client.clone(), prefix.to_vec(), after, tx));
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .read(|mut c| async move {
                c.get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await?;
        Ok(rev(resp.header().map_or(0, |h| h.revision())))
    }

    async fn grant_lease(&self, ttl_seconds: u64) -> Result<LeaseId> {
        if ttl_seconds == 0 {
            return Err(Error::InvalidArgument(
                "a lease needs a positive TTL".into(),
            ));
        }
        let resp = self
            .client
            .lease_client()
            .grant(etcd_rev(ttl_seconds), None)
            .await
            .map_err(map_err)?;
        Ok(rev(resp.id()))
    }
}

#[async_trait]
impl Backend for Etcd {
    async fn compact(&self, revision: Revision) -> Result<()> {
        let options = CompactionOptions::new().with_physical();
        match self
            .client
            .kv_client()
            .compact(etcd_rev(revision), Some(options))
            .await
            .map_err(map_err)
        {
            Ok(_) => Ok(()),
            Err(e) => match self.revision_error(e, revision).await {
                // Already compacted at or past it: nothing to do, as the contract says.
                Error::Compacted { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        match self.client.lease_client().revoke(etcd_rev(lease)).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("requested lease not found") => {
                Err(Error::LeaseNotFound(lease))
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

/// Delivers every event under `prefix` after `after`, re-creating the etcd watch from the
/// last delivered revision whenever it breaks, until the consumer goes away.
async fn watch_task(
    client: Client,
    prefix: Vec<u8>,
    after: Revision,
    tx: mpsc::Sender<Result<Event>>,
) {
    // The last revision whose events have all been delivered.
    let mut delivered = after;
    let mut backoff = Duration::from_millis(20);
    loop {
        let options = WatchOptions::new()
            .with_range(range_end(&prefix))
            .with_start_revision(etcd_rev(delivered + 1))
            .with_prev_key();
        let key = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.clone()
        };
        let mut watch_client = client.watch_client();
        let stream = tokio::select! {
            () = tx.closed() => return,
            stream = watch_client.watch(key, Some(options)) => stream,
        };
        match stream {
            Err(e) => tracing::warn!(error = %e, delivered, "etcd watch could not start, retrying"),
            Ok(mut stream) => loop {
                let message = tokio::select! {
                    () = tx.closed() => return,
                    message = stream.message() => message,
                };
                match message {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            let _ = tx
                                .send(Err(Error::Compacted {
                                    requested: delivered,
                                    compacted: rev(resp.compact_revision()),
                                }))
                                .await;
                            return;
                        }
                        if resp.canceled() {
                            tracing::warn!(
                                reason = resp.cancel_reason(),
                                delivered,
                                "etcd canceled a watch, re-creating it"
                            );
                            break;
                        }
                        // etcd sends all events of one revision in one response, so a
                        // revision is delivered whole or not at all.
                        for event in resp.events() {
                            let Some(kv) = event.kv() else { continue };
                            let prev = event.prev_kv().map(from_etcd);
                            let event = match event.event_type() {
                                EventType::Put => Event {
                                    kind: EventKind::Put,
                                    kv: from_etcd(kv),
                                    prev,
                                },
                                EventType::Delete => Event {
                                    kind: EventKind::Delete,
                                    kv: KeyValue {
                                        key: Bytes::copy_from_slice(kv.key()),
                                        value: Bytes::new(),
                                        create_revision: 0,
                                        mod_revision: rev(kv.mod_revision()),
                                        version: 0,
                                        lease: None,
                                    },
                                    prev,
                                },
                            };
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        if let Some(last) = resp.events().last().and_then(|e| e.kv()) {
                            delivered = rev(last.mod_revision());
                        }
                        backoff = Duration::from_millis(20);
                    }
                    Ok(None) => {
                        tracing::warn!(delivered, "etcd watch stream ended, re-creating it");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, delivered, "etcd watch broke, re-creating it");
                        break;
                    }
                }
            },
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod broken_connections {
    use super::*;

    /// An error over an I/O error, as hyper's body errors are.
    #[derive(Debug)]
    struct Body(std::io::Error);

    impl std::fmt::Display for Body {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error reading a body from connection")
        }
    }

    impl std::error::Error for Body {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_member_killed_mid_request_is_unavailable_not_a_backend_failure() {
        let reset = Body(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let status = tonic::Status::from_error(Box::new(reset));
        assert_eq!(status.code(), Code::Unknown, "{status:?}");
        assert!(map_err(etcd_client::Error::GRpcStatus(status)).is_retryable());
        let other = tonic::Status::new(Code::Unknown, "something else");
        assert!(!map_err(etcd_client::Error::GRpcStatus(other)).is_retryable());
    }
}
