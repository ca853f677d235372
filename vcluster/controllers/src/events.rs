//! Events, as client-go's event recorder writes them for kube-controller-manager: core/v1
//! `Event`s in the involved object's namespace (`kubectl describe` and `kubectl get events`
//! read them), with upstream's reasons and messages, `source.component` and
//! `reportingComponent` naming the controller.
//!
//! Recording never blocks or fails a reconcile: [`Recorder::record`] queues the event
//! (dropped when the queue is full, as client-go's broadcaster drops), and one task writes
//! them. That task does what client-go's `EventCorrelator` does before a write:
//! - aggregation: the same event again (object, reason, message, type, source) within ten
//!   minutes increments the first one's `count` and `lastTimestamp` instead of adding one;
//! - spam filtering: each (source, object) may write a burst of 25 events, then one every
//!   five minutes (so a 100-replica scale-up leaves 25 `SuccessfulCreate` events, as upstream).
//!
//! Both caches are bounded (4,096 entries, the oldest forgotten first, as upstream's LRU).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vcluster_core::object::{UpdateScope, meta_str};
use vcluster_core::status::Reason;

use crate::{Api, Resource, pods};

/// How many events wait to be written before new ones are dropped.
const QUEUED: usize = 1000;
/// How many keys each cache remembers.
const CACHE: usize = 4096;
/// How long a repeat still counts as the same event.
const AGGREGATE_FOR: Duration = Duration::from_secs(600);
/// The spam filter's burst per (source, object), and the time that earns one more.
const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_secs(300);

/// `Normal` or `Warning`, the two types upstream's events have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One event to write.
#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant: Arc<str>,
    /// The controller that records it (`replicaset-controller`).
    pub component: &'static str,
    /// The object it is about, as read.
    pub object: Arc<Value>,
    pub kind: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// Where controllers record events; cloning shares the queue.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// A recorder and the queue its events arrive on, for [`write_events`].
    pub fn channel() -> (Self, mpsc::Receiver<Pending>) {
        let (tx, rx) = mpsc::channel(QUEUED);
        (Self { tx }, rx)
    }

    /// Queues an event about `object`; never waits.
    pub(crate) fn record(
        &self,
        tenant: &str,
        component: &'static str,
        object: &Value,
        kind: EventType,
        reason: &'static str,
        message: String,
    ) {
        let pending = Pending {
            tenant: Arc::from(tenant),
            component,
            object: Arc::new(object.clone()),
            kind,
            reason,
            message,
        };
        if self.tx.try_send(pending).is_err() {
            tracing::debug!(reason, "event dropped: the queue is full");
        }
    }
}

/// A map that forgets its oldest key past [`CACHE`] keys.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            if self.order.len() > CACHE
                && let Some(oldest) = self.order.pop_front()
            {
                self.map.remove(&oldest);
            }
        }
    }
}

/// What an event is the same as: its tenant, object (by uid), source, type, reason, message.
type Same = (
    Arc<str>,
    String,
    &'static str,
    EventType,
    &'static str,
    String,
);

/// An event written, for aggregating repeats into it.
struct Written {
    namespace: String,
    name: String,
    at: Instant,
}

/// A token bucket per (tenant, source, object uid).
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + earned).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The events resource.
fn events() -> Resource {
    Resource::builtin("", "events")
}

/// Writes the events recorded until every recorder is gone.
pub async fn write_events(api: Arc<dyn Api>, mut queue: mpsc::Receiver<Pending>) {
    let mut written: Bounded<Same, Written> = Bounded::new();
    let mut buckets: Bounded<(Arc<str>, &'static str, String), Bucket> = Bounded::new();
    while let Some(event) = queue.recv().await {
        let uid = meta_str(&event.object, "uid")
            .unwrap_or_default()
            .to_owned();
        let now = Instant::now();
        let source = (event.tenant.clone(), event.component, uid.clone());
        match buckets.get_mut(&source) {
            Some(bucket) => {
                if !bucket.take(now) {
                    continue;
                }
            }
            None => buckets.insert(
                source,
                Bucket {
                    tokens: BURST - 1.0,
                    at: now,
                },
            ),
        }
        let same: Same = (
            event.tenant.clone(),
            uid,
            event.component,
            event.kind,
            event.reason,
            event.message.clone(),
        );
        let repeat = written
            .get_mut(&same)
            .filter(|w| now.duration_since(w.at) < AGGREGATE_FOR);
        let result = match repeat {
            Some(w) => match count_again(&*api, &event, &w.namespace, &w.name).await {
                Ok(true) => {
                    w.at = now;
                    Ok(None)
                }
                // Gone (expired, deleted): written anew.
                Ok(false) => create(&*api, &event).await.map(Some),
                Err(e) => Err(e),
            },
            None => create(&*api, &event).await.map(Some),
        };
        match result {
            Ok(Some((namespace, name))) => written.insert(
                same,
                Written {
                    namespace,
                    name,
                    at: now,
                },
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(tenant = %event.tenant, reason = event.reason, error = %e, "writing an event failed");
            }
        }
    }
}

/// The event as a new core/v1 `Event`.
fn new_event(event: &Pending, now: &str) -> (String, Value) {
    let object = &event.object;
    let name = meta_str(object, "name").unwrap_or_default();
    // Cluster-scoped objects' events go to `default`, as upstream's recorder puts them.
    let namespace = meta_str(object, "namespace")
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_owned();
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": namespace},
        "involvedObject": {
            "kind": object["kind"],
            "namespace": object["metadata"]["namespace"],
            "name": name,
            "uid": object["metadata"]["uid"],
            "apiVersion": object["apiVersion"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "reason": event.reason,
        "message": event.message,
        "source": {"component": event.component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": event.kind.as_str(),
        "reportingComponent": event.component,
        "reportingInstance": "",
    });
    (namespace, body)
}

async fn create(api: &dyn Api, event: &Pending) -> crate::Result<(String, String)> {
    let (namespace, body) = new_event(event, &pods::stamp(pods::now()));
    let created = api
        .create(&event.tenant, &events(), Some(&namespace), body)
        .await?;
    let name = meta_str(&created, "name").unwrap_or_default().to_owned();
    Ok((namespace, name))
}

/// Counts a repeat into the event written before; false if that event is gone.
async fn count_again(
    api: &dyn Api,
    event: &Pending,
    namespace: &str,
    name: &str,
) -> crate::Result<bool> {
    let resource = events();
    for _ in 0..3 {
        let Some(mut current) = api
            .get(&event.tenant, &resource, Some(namespace), name)
            .await?
        else {
            return Ok(false);
        };
        let count = current["count"].as_i64().unwrap_or(1);
        current["count"] = json!(count + 1);
        current["lastTimestamp"] = json!(pods::stamp(pods::now()));
        match api
            .replace(&event.tenant, &resource, &current, UpdateScope::Main)
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if e.is(Reason::Conflict) => continue,
            Err(e) if e.is(Reason::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_per_refill() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: BURST,
            at: start,
        };
        let allowed = (0..100).filter(|_| bucket.take(start)).count();
        assert_eq!(allowed, 25);
        assert!(!bucket.take(start + REFILL / 2));
        assert!(bucket.take(start + REFILL + REFILL / 2));
        assert!(!bucket.take(start + REFILL + REFILL / 2));
    }

    #[test]
    fn caches_forget_their_oldest_keys() {
        let mut cache = Bounded::new();
        for i in 0..(CACHE + 10) {
            cache.insert(i, i);
        }
        assert!(cache.get_mut(&0).is_none());
        assert!(cache.get_mut(&(CACHE + 9)).is_some());
        assert_eq!(cache.map.len(), CACHE);
    }

    #[tokio::test]
    async fn repeats_are_counted_into_one_event_and_a_burst_is_the_most_one_object_gets() {
        let api = crate::fake::Fake::with([]);
        let (recorder, queue) = Recorder::channel();
        let rs = |name: &str, uid: &str| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": "dev", "uid": uid}})
        };
        let (web, db) = (rs("web", "u1"), rs("db", "u2"));
        let tenant = crate::fake::TENANT;
        for _ in 0..30 {
            recorder.record(
                tenant,
                "replicaset-controller",
                &web,
                EventType::Normal,
                "SuccessfulCreate",
                "Created pod: web-1".into(),
            );
        }
        for i in 0..3 {
            recorder.record(
                tenant,
                "replicaset-controller",
                &db,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: db-{i}"),
            );
        }
        drop(recorder);
        write_events(api.clone(), queue).await;
        let written = api
            .list(tenant, &events(), Some("dev"))
            .await
            .expect("events");
        let about = |uid: &str| -> Vec<&Value> {
            written
                .iter()
                .filter(|e| e["involvedObject"]["uid"] == uid)
                .collect()
        };
        let web_events = about("u1");
        assert_eq!(web_events.len(), 1, "repeats are one event: {written:?}");
        assert_eq!(
            web_events[0]["count"], 25,
            "the spam filter lets 25 through"
        );
        assert_eq!(
            web_events[0]["source"]["component"],
            "replicaset-controller"
        );
        assert_eq!(
            about("u2").len(),
            3,
            "different messages are different events"
        );
    }

    #[test]
    fn events_name_their_object_as_upstream() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "dev", "uid": "u1", "resourceVersion": "7"}});
        let (namespace, event) = new_event(
            &Pending {
                tenant: Arc::from("t"),
                component: "replicaset-controller",
                object: Arc::new(pod),
                kind: EventType::Normal,
                reason: "SuccessfulCreate",
                message: "Created pod: web-1".into(),
            },
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(namespace, "dev");
        assert_eq!(event["involvedObject"]["uid"], "u1");
        assert_eq!(event["involvedObject"]["kind"], "Pod");
        assert_eq!(event["source"]["component"], "replicaset-controller");
        assert_eq!(event["count"], 1);
        assert!(
            event["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("web-1."))
        );
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u2"}});
        let (namespace, _) = new_event(
            &Pending {
                tenant: Arc::from("t"),
                component: "node-controller",
                object: Arc::new(node),
                kind: EventType::Normal,
                reason: "RegisteredNode",
                message: String::new(),
            },
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(namespace, "default");
    }
}
