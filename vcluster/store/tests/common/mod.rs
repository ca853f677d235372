//! Shared by the store's test files: backends to test, concurrent writers that record what
//! was acknowledged, and the checker that holds watch histories against that record.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use vcluster_store::{
    Backend, Embedded, EmbeddedOptions, Error, Etcd, EtcdOptions, Event, EventKind, KeyValue,
    Revision, Scoped, Store, WatchStream,
};
use vcluster_testkit::{EtcdCluster, SharedEtcd};

/// A key prefix no other test in this run uses.
pub fn unique_prefix(tag: &str) -> Bytes {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Bytes::from(format!("/test/{tag}-{nanos}-{n}/"))
}

/// An embedded store in a fresh directory, with a small watch window so that watches from
/// older revisions exercise the replay from disk, and a small write-ahead log checkpointed
/// often, so that tests cross checkpoints and the log's wrap-around.
pub fn open_embedded(dir: &std::path::Path) -> Arc<Embedded> {
    let options = EmbeddedOptions {
        watch_window_revisions: 64,
        wal_bytes: 256 << 10,
        checkpoint_interval: Duration::from_millis(50),
        ..EmbeddedOptions::default()
    };
    Arc::new(Embedded::open(dir.join("store.redb"), options).expect("open the embedded store"))
}

pub async fn connect_etcd(endpoints: Vec<String>) -> Arc<Etcd> {
    Arc::new(
        Etcd::connect(EtcdOptions::new(endpoints))
            .await
            .expect("connect to etcd"),
    )
}

/// What a conformance test runs against.
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The whole backend behind it (compaction, leases), only for tests that own it.
    pub backend: Arc<dyn Backend>,
    /// Whether this test is alone on its backend, so revisions move only by its writes.
    pub alone: bool,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = open_embedded(dir.path());
        Fixture {
            store: backend.clone(),
            backend,
            alone: true,
            _guard: Box::new(dir),
        }
    }

    /// A test sharing etcd with others: confined to a prefix of its own.
    pub async fn etcd_shared() -> Self {
        let etcd = SharedEtcd::get();
        let backend = connect_etcd(etcd.endpoints()).await;
        let store = Scoped::new(backend.clone(), unique_prefix("etcd")).expect("valid prefix");
        Fixture {
            store: Arc::new(store),
            backend,
            alone: false,
            _guard: Box::new(etcd),
        }
    }

    /// A test that compacts or revokes: an etcd of its own.
    pub async fn etcd_alone() -> Self {
        let etcd = EtcdCluster::single();
        let backend = connect_etcd(etcd.endpoints()).await;
        Fixture {
            store: backend.clone(),
            backend,
            alone: true,
            _guard: Box::new(etcd),
        }
    }
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// An acknowledged write: what a watcher must deliver exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acked {
    pub revision: Revision,
    pub key: Bytes,
    /// The value written; `None` for a delete.
    pub value: Option<Bytes>,
}

/// A small deterministic generator, so a failing history can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One writer: `ops` random creates, compare-and-swap updates, unconditional updates and
/// deletes over `keys` keys under `prefix`. Returns what was acknowledged; lost races
/// (AlreadyExists, Conflict, NotFound) write nothing and are not recorded. Unavailable
/// errors (a killed member) are tolerated when `tolerate_unavailable`; their outcome is
/// unknown, so the caller may only check acknowledged writes.
pub async fn random_writer(
    store: Arc<dyn Store>,
    prefix: Bytes,
    seed: u64,
    ops: usize,
    keys: u64,
    tolerate_unavailable: bool,
) -> Vec<Acked> {
    let mut rng = Rng::new(seed);
    let mut acked = Vec::new();
    for i in 0..ops {
        let key =
            Bytes::from([&prefix[..], format!("k{:03}", rng.below(keys)).as_bytes()].concat());
        let value = Bytes::from(format!("w{seed}-op{i}"));
        let current = match store.get(&key).await {
            Ok(c) => c,
            Err(e) if tolerate_unavailable && e.is_retryable() => continue,
            Err(e) => panic!("read failed: {e:#}"),
        };
        let result = match (&current, rng.below(4)) {
            (None, _) => store
                .create(key.clone(), value.clone(), None)
                .await
                .map(|kv| (kv.mod_revision, Some(value))),
            (Some(kv), 0 | 1) => store
                .update(key.clone(), value.clone(), Some(kv.mod_revision), None)
                .await
                .map(|kv| (kv.mod_revision, Some(value))),
            (Some(_), 2) => store
                .update(key.clone(), value.clone(), None, None)
                .await
                .map(|kv| (kv.mod_revision, Some(value))),
            (Some(kv), _) => store
                .delete(key.clone(), Some(kv.mod_revision))
                .await
                .map(|d| (d.revision, None)),
        };
        match result {
            Ok((revision, value)) => acked.push(Acked {
                revision,
                key,
                value,
            }),
            Err(Error::AlreadyExists { .. } | Error::Conflict { .. } | Error::NotFound { .. }) => {}
            Err(e) if tolerate_unavailable && !matches!(e, Error::InvalidArgument(_)) => {
                // Outcome unknown (a member died mid-request, or lost leadership).
            }
            Err(e) => panic!("write failed: {e:#}"),
        }
    }
    acked
}

/// Reads a watch until it has delivered revision `until`, or fails after `timeout`.
pub async fn collect_until(
    stream: &mut WatchStream,
    until: Revision,
    timeout: Duration,
) -> Vec<Event> {
    let mut events = Vec::new();
    if until == 0 {
        return events;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while events.last().is_none_or(|e: &Event| e.revision() < until) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e:#}", events.len()),
            Ok(None) => panic!("watch ended after {} events", events.len()),
            Err(_) => panic!(
                "watch delivered {} events up to revision {:?}, not up to {until}, within {timeout:?}",
                events.len(),
                events.last().map(Event::revision)
            ),
        }
    }
    events
}

/// Checks a watch history against the acknowledged writes it covers:
/// - revisions never go down, and no (revision, key) is delivered twice;
/// - every acknowledged write after `after` is delivered, with the value written;
/// - nothing is delivered that was not written (`exact`: when every write was acknowledged);
/// - each event's previous value is the key's value before it, replayed from `initial`,
///   and versions and create revisions follow etcd's rules.
pub fn check_history(
    events: &[Event],
    acked: &[Acked],
    after: Revision,
    initial: &HashMap<Bytes, KeyValue>,
    exact: bool,
) {
    let mut last = after;
    let mut seen = HashSet::new();
    for e in events {
        assert!(
            e.revision() > after,
            "event at {} not after {after}",
            e.revision()
        );
        assert!(
            e.revision() >= last,
            "revision went from {last} down to {}",
            e.revision()
        );
        last = e.revision();
        assert!(
            seen.insert((e.revision(), e.kv.key.clone())),
            "delivered twice: {:?} at {}",
            e.kv.key,
            e.revision()
        );
    }
    let delivered: BTreeMap<(Revision, Bytes), Option<Bytes>> = events
        .iter()
        .map(|e| {
            let value = (e.kind == EventKind::Put).then(|| e.kv.value.clone());
            ((e.revision(), e.kv.key.clone()), value)
        })
        .collect();
    for a in acked.iter().filter(|a| a.revision > after) {
        match delivered.get(&(a.revision, a.key.clone())) {
            Some(value) => assert_eq!(value, &a.value, "wrong value delivered for {a:?}"),
            None => panic!("acknowledged write never delivered: {a:?}"),
        }
    }
    if exact {
        let expected = acked.iter().filter(|a| a.revision > after).count();
        assert_eq!(
            events.len(),
            expected,
            "events delivered that no one acknowledged"
        );
    }
    let mut model = initial.clone();
    for e in events {
        let before = model.get(&e.kv.key);
        assert_eq!(e.prev.as_ref(), before, "wrong previous value in {e:?}");
        match e.kind {
            EventKind::Put => {
                let (create, version) =
                    before.map_or((e.revision(), 1), |p| (p.create_revision, p.version + 1));
                assert_eq!(
                    (e.kv.create_revision, e.kv.version),
                    (create, version),
                    "{e:?}"
                );
                model.insert(e.kv.key.clone(), e.kv.clone());
            }
            EventKind::Delete => {
                assert!(
                    before.is_some(),
                    "delete of a key that did not exist: {e:?}"
                );
                model.remove(&e.kv.key);
            }
        }
    }
}

/// The latest revision among acknowledged writes.
pub fn max_revision(acked: &[Acked]) -> Revision {
    acked.iter().map(|a| a.revision).max().unwrap_or(0)
}
