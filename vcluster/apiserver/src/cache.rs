//! The watch cache: one per tenant and resource, created when first watched or listed, fed
//! by one store watch. Every client watch of that resource is served from it, so a thousand
//! watchers cost one store watch, and so is every list that any recent state will do or
//! that must be current (upstream's consistent reads from the cache).
//!
//! It holds the current objects and a bounded window of recent events. A client watch
//! from a revision inside the window gets every event after it; from before the window it
//! gets 410 Expired (in the stream, as kube-apiserver sends it) and re-lists.
//!
//! [`Progress`] tells how far the store's changes have been read, which a cache alone
//! cannot (it sees only its own resource's changes): what etcd's progress notifications
//! tell upstream's watch cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use vcluster_core::object::with_resource_version;
use vcluster_core::registry;
use vcluster_store::{Backend, EventKind, RangeRequest, Store};

use crate::stored;

/// How long a read waits for a watch cache to reach the revision it needs before it gives
/// up (upstream's 3 s): a list then reads the store, or answers "too large resource
/// version".
pub(crate) const CACHE_WAIT: Duration = Duration::from_secs(3);

/// Events kept per cache for watchers that start in the past.
const WINDOW: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, with the object before it (for selectors that an object enters or leaves).
pub struct CacheEvent {
    pub revision: u64,
    pub kind: EventType,
    pub key: Bytes,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    /// `object` serialized once, for every watcher that sends it as it is.
    pub encoded: Bytes,
}

/// A cached object and its JSON, encoded once for every list and watch that sends it.
#[derive(Clone)]
pub struct Cached {
    pub object: Arc<Value>,
    pub encoded: Bytes,
}

impl Cached {
    fn new(object: Arc<Value>) -> Self {
        let encoded = Bytes::from(serde_json::to_vec(&*object).expect("a JSON value serializes"));
        Self { object, encoded }
    }
}

struct State {
    objects: BTreeMap<Bytes, Cached>,
    events: VecDeque<Arc<CacheEvent>>,
    /// Events cover the revisions after `start`.
    start: u64,
    /// The revision of the last event applied (or the start).
    revision: u64,
}

pub struct WatchCache {
    state: RwLock<State>,
    head: watch::Sender<u64>,
    alive: AtomicBool,
}

/// Where a watcher goes next.
pub enum Next {
    Events(Vec<Arc<CacheEvent>>),
    /// The watcher's revision is older than the window.
    Expired {
        oldest: u64,
    },
}

/// A stored object as cached; `None` (logged) if it cannot be read.
fn decode(kv: &vcluster_store::KeyValue) -> Option<Arc<Value>> {
    stored::readable(kv).map(Arc::new)
}

impl WatchCache {
    /// Loads the objects under `prefix` as of revision `start` (the latest if 0) and follows
    /// the store from there.
    pub async fn start(
        store: Arc<dyn Store>,
        prefix: Bytes,
        start: u64,
    ) -> Result<Arc<Self>, vcluster_store::Error> {
        let request = RangeRequest {
            revision: (start > 0).then_some(start),
            ..RangeRequest::prefix(prefix.clone())
        };
        let page = store.range(request).await?;
        let objects = page
            .kvs
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), Cached::new(decode(kv)?))))
            .collect();
        let revision = page.revision;
        let cache = Arc::new(Self {
            state: RwLock::new(State {
                objects,
                events: VecDeque::new(),
                start: revision,
                revision,
            }),
            head: watch::Sender::new(revision),
            alive: AtomicBool::new(true),
        });
        let mut stream = store.watch(&prefix, revision).await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let Some(cache) = weak.upgrade() else { return };
                match item {
                    Ok(event) => cache.apply(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: store watch ended; the cache will be rebuilt");
                        cache.alive.store(false, Ordering::Release);
                        return;
                    }
                }
            }
            if let Some(cache) = weak.upgrade() {
                cache.alive.store(false, Ordering::Release);
            }
        });
        Ok(cache)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn apply(&self, event: vcluster_store::Event) {
        let revision = event.revision();
        let key = event.kv.key.clone();
        let put = match event.kind {
            EventKind::Put => decode(&event.kv),
            EventKind::Delete => None,
        };
        {
            let mut state = self.state.write().expect("cache lock");
            // The object before the event is the one cached (decoded once, when it was
            // written); the store's copy is decoded only if the cache lacks it.
            let prev = match state.objects.get(&key) {
                Some(cached) => Some(cached.object.clone()),
                None => event.prev.as_ref().and_then(decode),
            };
            let cached = match put {
                Some(object) => {
                    let kind = if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    Some((kind, object))
                }
                // A deleted object is sent as it was last, at the deletion's revision; so is
                // one that became unreadable, which lists leave out as well.
                None => prev.as_ref().map(|p| {
                    let object = with_resource_version((**p).clone(), revision);
                    (EventType::Deleted, Arc::new(object))
                }),
            };
            if let Some((kind, object)) = cached {
                let cached = Cached::new(object);
                match kind {
                    EventType::Deleted => state.objects.remove(&key),
                    _ => state.objects.insert(key.clone(), cached.clone()),
                };
                state.events.push_back(Arc::new(CacheEvent {
                    revision,
                    kind,
                    key,
                    object: cached.object,
                    prev,
                    encoded: cached.encoded,
                }));
                if state.events.len() > WINDOW
                    && let Some(old) = state.events.pop_front()
                {
                    state.start = old.revision;
                }
            }
            state.revision = revision;
        }
        self.head.send_replace(revision);
    }

    /// The current objects under `prefix` (in key order) and the revision they are at.
    pub fn snapshot(&self, prefix: &[u8]) -> (Vec<(Bytes, Cached)>, u64) {
        let state = self.state.read().expect("cache lock");
        let objects = state
            .objects
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (objects, state.revision)
    }

    /// The revision of the last change applied.
    pub fn revision(&self) -> u64 {
        self.state.read().expect("cache lock").revision
    }

    /// Waits until the cache has applied `revision`, for at most `within`; the revision it
    /// reached otherwise.
    pub async fn wait_for(&self, revision: u64, within: std::time::Duration) -> Result<(), u64> {
        let mut head = self.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let reached = *head.borrow_and_update();
            if reached >= revision {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, head.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(self.revision()),
            }
        }
    }

    /// The cached object at `key`.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Value>> {
        let state = self.state.read().expect("cache lock");
        state.objects.get(key).map(|c| c.object.clone())
    }

    /// Events after `after`, or `Expired` if the window no longer reaches back to it.
    pub fn after(&self, after: u64) -> Next {
        let state = self.state.read().expect("cache lock");
        if after < state.start {
            return Next::Expired {
                oldest: state.start,
            };
        }
        let from = state.events.partition_point(|e| e.revision <= after);
        Next::Events(state.events.range(from..).cloned().collect())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// How far the store's changes have been read: one store watch over every key, noting per
/// tenant and resource the revision of its last change. With it a list that must see every
/// change committed before it (a `resourceVersion` of "") is answered from the watch cache
/// once the cache has reached its resource's last change up to the store's current
/// revision, as upstream's are once etcd's progress notification says the cache is current.
pub(crate) struct Progress {
    /// The revision up to which every change has been read; 0 while not following.
    head: watch::Sender<u64>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The revision the watch started after: no change before it is in `last`.
    since: u64,
    /// Tenant → group → plural → the revision of the resource's last change.
    last: HashMap<String, HashMap<String, HashMap<String, u64>>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            head: watch::Sender::new(0),
            seen: Mutex::default(),
        }
    }
}

impl Progress {
    /// Follows every change of `backend` until the task is dropped, starting again a
    /// second after its watch ends (meanwhile lists read the store).
    pub(crate) async fn follow(self: Arc<Self>, backend: Arc<dyn Backend>) {
        loop {
            if let Err(e) = self.follow_once(backend.as_ref()).await {
                tracing::warn!(error = %e, "watch cache progress: the store watch ended; lists read the store until it is back");
            }
            self.head.send_replace(0);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn follow_once(&self, backend: &dyn Backend) -> Result<(), vcluster_store::Error> {
        let start = backend.current_revision().await?;
        let mut events = backend.watch(b"/", start).await?;
        *self.seen.lock().expect("progress lock") = Seen {
            since: start,
            last: HashMap::new(),
        };
        self.head.send_replace(start);
        while let Some(event) = events.next().await {
            let mut revision = self.note(&event?);
            // The other events of a revision (a lease's keys, revoked at once) are already
            // waiting: the revision is told once they are read too.
            while let Some(Some(event)) = events.next().now_or_never() {
                revision = self.note(&event?);
            }
            self.head.send_replace(revision);
        }
        Err(vcluster_store::Error::Closed)
    }

    /// Notes the change `event` made; its revision.
    fn note(&self, event: &vcluster_store::Event) -> u64 {
        let revision = event.revision();
        let parts = vcluster_store::tenant_key(&event.kv.key)
            .and_then(|(tenant, key)| Some((tenant, registry::parse_storage_key(key)?)));
        if let Some((tenant, key)) = parts {
            let mut seen = self.seen.lock().expect("progress lock");
            let groups = match seen.last.get_mut(tenant) {
                Some(groups) => groups,
                None => seen.last.entry(tenant.to_owned()).or_default(),
            };
            let plurals = match groups.get_mut(key.group) {
                Some(plurals) => plurals,
                None => groups.entry(key.group.to_owned()).or_default(),
            };
            match plurals.get_mut(key.plural) {
                Some(last) => *last = revision,
                None => {
                    plurals.insert(key.plural.to_owned(), revision);
                }
            }
        }
        revision
    }

    /// The revision a watch cache of `tenant`'s resource (`group`, `plural`) must have
    /// reached to hold every change up to revision `current`, once the changes have been
    /// read that far (waited for until `deadline`); `None` if they are not read by then or
    /// nothing follows the store.
    pub(crate) async fn needed(
        &self,
        tenant: &str,
        group: &str,
        plural: &str,
        current: u64,
        deadline: Instant,
    ) -> Option<u64> {
        let mut head = self.head.subscribe();
        loop {
            let read = *head.borrow_and_update();
            if read == 0 {
                return None;
            }
            if read >= current {
                break;
            }
            tokio::time::timeout_at(deadline, head.changed())
                .await
                .ok()?
                .ok()?;
        }
        let seen = self.seen.lock().expect("progress lock");
        let last = seen
            .last
            .get(tenant)
            .and_then(|groups| groups.get(group))
            .and_then(|plurals| plurals.get(plural));
        Some(last.copied().unwrap_or(seen.since))
    }
}
