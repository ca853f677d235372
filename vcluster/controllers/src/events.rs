//! Events, as client-go's event recorder writes them for kube-controller-manager: core/v1
//! `Event`s in the involved object's namespace (`kubectl describe` and `kubectl get events`
//! read them), with upstream's reasons and messages, `source.component` and
//! `reportingComponent` naming the controller.
//!
//! Recording never blocks or fails a reconcile: [`Recorder::record`] queues the event
//! (dropped when the queue is full, as client-go's broadcaster drops), and one task writes
//! them, after client-go's correlation (`vcluster_core::events`): the same event again
//! (object, reason, message, type, source) within ten minutes increments the first one's
//! `count` and `lastTimestamp` instead of adding one, and each (source, object) may write a
//! burst of 25 events, then one every five minutes (so a 100-replica scale-up leaves 25
//! `SuccessfulCreate` events, as upstream).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vcluster_core::events::{Correlator, REMEMBERED, Tally};
use vcluster_core::object::{UpdateScope, meta_str};
use vcluster_core::status::Reason;

use crate::{Api, Resource, pods};

/// How many events wait to be written before new ones are dropped.
const QUEUED: usize = 1000;

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

/// What makes two events the same: tenant, object (by uid), source, type, reason, message.
type Same = (
    Arc<str>,
    String,
    &'static str,
    EventType,
    &'static str,
    String,
);
/// Who speaks about what, for the spam filter: tenant, source, object (by uid).
type Speaker = (Arc<str>, &'static str, String);

/// The events resource.
fn events() -> Resource {
    Resource::builtin("", "events")
}

/// Writes the events recorded until every recorder is gone.
pub async fn write_events(api: Arc<dyn Api>, mut queue: mpsc::Receiver<Pending>) {
    let mut correlator: Correlator<Same, Speaker> = Correlator::new(REMEMBERED);
    while let Some(event) = queue.recv().await {
        let uid = meta_str(&event.object, "uid")
            .unwrap_or_default()
            .to_owned();
        let name = meta_str(&event.object, "name").unwrap_or_default();
        let same: Same = (
            event.tenant.clone(),
            uid.clone(),
            event.component,
            event.kind,
            event.reason,
            event.message.clone(),
        );
        let speaker: Speaker = (event.tenant.clone(), event.component, uid);
        let Some(tally) = correlator.observe(same, speaker, name, jiff::Timestamp::now()) else {
            continue; // spam, as client-go's filter judges it
        };
        if let Err(e) = write(&*api, &event, &tally).await {
            tracing::debug!(tenant = %event.tenant, reason = event.reason, error = %e, "writing an event failed");
        }
    }
}

/// The event as a core/v1 `Event`, counted as `tally` says.
fn new_event(event: &Pending, tally: &Tally) -> (String, Value) {
    let object = &event.object;
    let name = meta_str(object, "name").unwrap_or_default();
    // Cluster-scoped objects' events go to `default`, as upstream's recorder puts them.
    let namespace = meta_str(object, "namespace")
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_owned();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": tally.name, "namespace": namespace},
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
        "firstTimestamp": pods::stamp(tally.first),
        "lastTimestamp": pods::stamp(tally.last),
        "count": tally.count,
        "type": event.kind.as_str(),
        "reportingComponent": event.component,
        "reportingInstance": "",
    });
    (namespace, body)
}

/// Writes an event: a new one, or the count and last time of one written before (made
/// again, with its count, if it is gone meanwhile: expired or deleted).
async fn write(api: &dyn Api, event: &Pending, tally: &Tally) -> crate::Result<()> {
    let (namespace, body) = new_event(event, tally);
    let resource = events();
    if tally.count > 1
        && let Some(mut current) = api
            .get(&event.tenant, &resource, Some(&namespace), &tally.name)
            .await?
    {
        current["count"] = json!(tally.count);
        current["lastTimestamp"] = json!(pods::stamp(tally.last));
        return match api
            .replace(&event.tenant, &resource, &current, UpdateScope::Main)
            .await
        {
            // Counted by a newer write already, or gone: nothing to add.
            Err(e) if e.is(Reason::Conflict) || e.is(Reason::NotFound) => Ok(()),
            other => other.map(drop),
        };
    }
    match api
        .create(&event.tenant, &resource, Some(&namespace), body)
        .await
    {
        Err(e) if e.is(Reason::AlreadyExists) => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn tally(name: &str) -> Tally {
        let at = jiff::Timestamp::from_second(1_800_000_000).expect("a time");
        Tally {
            name: name.into(),
            count: 1,
            first: at,
            last: at,
        }
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
            &tally("web-1.1"),
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
            &tally("n1.1"),
        );
        assert_eq!(namespace, "default");
    }
}
