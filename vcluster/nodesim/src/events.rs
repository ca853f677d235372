//! Events, recorded the way the components the simulator plays record theirs: core/v1
//! Events (what `kubectl describe` and `kubectl get events` read; an events.k8s.io/v1
//! Event, what kube-rs's `Recorder` writes, is not shown there by every server), named
//! `<object>.<hex unix nanoseconds>` in the involved object's namespace (`default` for a
//! node), and aggregated as client-go's `EventCorrelator` aggregates repeats: the same
//! event again within ten minutes adds to the count and moves the last timestamp of the
//! event already written instead of writing another; and, as its spam filter does, one
//! source records 25 occurrences about one object at once, then one every five minutes.
//!
//! Recording never waits and never fails: an occurrence is correlated at once and queued
//! for one of a few background writers, and a write that fails is logged at debug level
//! and forgotten, as client-go drops what its sink refuses in the end. A full queue drops
//! the occurrence, as client-go's broadcaster does, rather than slow the simulation down.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use vcluster_core::events::{REMEMBERED, Tally};

/// How many writers run at once. Each object's events go to the same writer, so that an
/// event is always created before it is patched.
const WRITERS: usize = 4;
/// How many occurrences wait for each writer before new ones are dropped (client-go's
/// broadcaster queues 1000).
const QUEUED: usize = 1000;

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Type {
    Normal,
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

/// The component that records an event, as `source` and `reportingComponent` /
/// `reportingInstance` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    component: &'static str,
    host: String,
    instance: String,
}

impl Source {
    /// The scheduler. Upstream's instance is the component's name and its host's; the
    /// simulator is the scheduler's host here.
    pub(crate) fn scheduler() -> Self {
        Self {
            component: "default-scheduler",
            host: String::new(),
            instance: format!("default-scheduler-{}", crate::MANAGER),
        }
    }

    /// The kubelet of node `node`: its host and instance are the node's name.
    pub(crate) fn kubelet(node: &str) -> Self {
        Self {
            component: "kubelet",
            host: node.to_owned(),
            instance: node.to_owned(),
        }
    }

    /// kube-controller-manager's node lifecycle controller, which names no host.
    pub(crate) fn node_controller() -> Self {
        Self {
            component: "node-controller",
            host: String::new(),
            instance: String::new(),
        }
    }
}

/// One occurrence of an event, before it is aggregated with earlier ones.
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    pub(crate) source: Source,
    pub(crate) object: ObjectReference,
    pub(crate) kind: Type,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// What the component was doing (only the scheduler says: `Binding`, `Scheduling`).
    pub(crate) action: Option<&'static str>,
}

/// A pod, or one of its containers when `field_path` names it (`spec.containers{web}`).
pub(crate) fn pod_reference(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        resource_version: pod.resource_version(),
        field_path,
    }
}

/// A node as its kubelet refers to it: upstream's kubelet knows only the node's name and
/// uses it as the uid too (which `kubectl describe node` searches for as well).
pub(crate) fn kubelet_node_reference(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

/// A node as the controllers refer to it, with its real uid.
pub(crate) fn node_reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.name_any()),
        uid: node.uid(),
        ..ObjectReference::default()
    }
}

/// Who says what about which object: what client-go's spam filter limits (the source and
/// the involved object but its field path and resourceVersion).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Speaker {
    component: &'static str,
    host: String,
    object: [Option<String>; 5],
}

/// What makes two occurrences the same event: everything client-go's correlator compares
/// (the source, the involved object but its resourceVersion, the type, reason and message).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    speaker: Speaker,
    field_path: Option<String>,
    kind: Type,
    reason: &'static str,
    message: String,
}

impl Key {
    fn of(occurrence: &Occurrence) -> Self {
        let o = &occurrence.object;
        Self {
            speaker: Speaker {
                component: occurrence.source.component,
                host: occurrence.source.host.clone(),
                object: [
                    o.kind.clone(),
                    o.namespace.clone(),
                    o.name.clone(),
                    o.uid.clone(),
                    o.api_version.clone(),
                ],
            },
            field_path: o.field_path.clone(),
            kind: occurrence.kind,
            reason: occurrence.reason,
            message: occurrence.message.clone(),
        }
    }
}

/// client-go's correlation of this simulator's occurrences: by [`Key`], limited per
/// [`Speaker`].
type Correlator = vcluster_core::events::Correlator<Key, Speaker>;

/// Counts an occurrence into `correlator`: what to write, if anything.
fn observe(
    correlator: &mut Correlator,
    occurrence: &Occurrence,
    object: &str,
    at: Timestamp,
) -> Option<Tally> {
    let key = Key::of(occurrence);
    let speaker = key.speaker.clone();
    correlator.observe(key, speaker, object, at)
}

/// One event to create (a count of 1) or to add to.
struct Job {
    namespace: String,
    event: Event,
}

/// Records events for the simulator's components; cheap to clone.
#[derive(Clone)]
pub(crate) struct Recorder {
    correlator: Arc<Mutex<Correlator>>,
    writers: Arc<[mpsc::Sender<Job>]>,
}

impl Recorder {
    /// Starts the background writers, which end when the last clone is dropped.
    pub(crate) fn start(client: &Client) -> Self {
        let writers: Vec<mpsc::Sender<Job>> = (0..WRITERS)
            .map(|_| {
                let (sender, jobs) = mpsc::channel(QUEUED);
                tokio::spawn(write(client.clone(), jobs));
                sender
            })
            .collect();
        Self {
            correlator: Arc::new(Mutex::new(Correlator::new(REMEMBERED))),
            writers: writers.into(),
        }
    }

    /// Records one occurrence, now.
    pub(crate) fn record(&self, occurrence: Occurrence) {
        let at = Timestamp::now();
        let object = occurrence.object.name.clone().unwrap_or_default();
        let tally = observe(
            &mut self.correlator.lock().expect("correlator"),
            &occurrence,
            &object,
            at,
        );
        let Some(tally) = tally else {
            return; // spam, as client-go's filter judges it
        };
        let namespace = occurrence
            .object
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let mut hasher = DefaultHasher::new();
        (&occurrence.object.uid, &occurrence.object.name).hash(&mut hasher);
        let writer = usize::try_from(hasher.finish() % WRITERS as u64).unwrap_or(0);
        let job = Job {
            event: event(occurrence, &namespace, tally),
            namespace,
        };
        if let Err(e) = self.writers[writer].try_send(job) {
            tracing::debug!(error = %e, "node simulator: event dropped");
        }
    }

    /// Records occurrences, in order.
    pub(crate) fn record_all(&self, occurrences: impl IntoIterator<Item = Occurrence>) {
        for occurrence in occurrences {
            self.record(occurrence);
        }
    }
}

/// The core/v1 Event of an occurrence counted as `tally`, as client-go's recorder fills it.
fn event(occurrence: Occurrence, namespace: &str, tally: Tally) -> Event {
    let Occurrence {
        source,
        object,
        kind,
        reason,
        message,
        action,
    } = occurrence;
    Event {
        metadata: ObjectMeta {
            name: Some(tally.name),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: object,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(kind.as_str().into()),
        source: Some(EventSource {
            component: Some(source.component.into()),
            host: Some(source.host).filter(|h| !h.is_empty()),
        }),
        first_timestamp: Some(Time(tally.first)),
        last_timestamp: Some(Time(tally.last)),
        count: Some(tally.count),
        action: action.map(Into::into),
        reporting_component: Some(source.component.into()),
        reporting_instance: Some(source.instance),
        ..Event::default()
    }
}

/// One writer: creates new events and adds repeats to the events already written. A
/// repeat of an event that is gone (expired, or its creation was dropped) creates it
/// again under the same name with the count so far, as client-go does.
async fn write(client: Client, mut jobs: mpsc::Receiver<Job>) {
    while let Some(Job { namespace, event }) = jobs.recv().await {
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = write_one(&api, &event).await {
            let name = event.metadata.name.as_deref().unwrap_or_default();
            tracing::debug!(event = %name, %namespace, error = %e, "node simulator: event not written");
        }
    }
}

async fn write_one(api: &Api<Event>, event: &Event) -> Result<(), kube::Error> {
    if event.count.is_some_and(|c| c > 1) {
        let name = event.metadata.name.as_deref().unwrap_or_default();
        let repeat = json!({"count": event.count, "lastTimestamp": event.last_timestamp});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&repeat))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    api.create(&PostParams::default(), event).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occurrence(message: &str) -> Occurrence {
        Occurrence {
            source: Source::scheduler(),
            object: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some("web".into()),
                uid: Some("u1".into()),
                resource_version: Some("1".into()),
                ..ObjectReference::default()
            },
            kind: Type::Warning,
            reason: "FailedScheduling",
            message: message.into(),
            action: Some("Scheduling"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("a timestamp")
    }

    /// What an occurrence of `o` at `at` writes, which must not be spam.
    fn seen(correlator: &mut Correlator, o: &Occurrence, seconds: i64) -> Tally {
        observe(correlator, o, "web", at(seconds)).expect("not spam")
    }

    #[test]
    fn repeats_within_ten_minutes_add_to_one_event() {
        let mut correlator = Correlator::new(16);
        let first = seen(&mut correlator, &occurrence("full"), 0);
        assert_eq!(first.count, 1);
        assert_eq!(first.name, format!("web.{:x}", at(0).as_nanosecond()));
        // Another resourceVersion of the same pod is the same event.
        let mut later = occurrence("full");
        later.object.resource_version = Some("7".into());
        let second = seen(&mut correlator, &later, 599);
        assert_eq!(
            second,
            Tally {
                name: first.name.clone(),
                count: 2,
                first: at(0),
                last: at(599),
            }
        );
        // Ten minutes counts from the last occurrence, not the first.
        let third = seen(&mut correlator, &later, 1199);
        assert_eq!((third.name.as_str(), third.count), (first.name.as_str(), 3));
        // After more than ten minutes of quiet it is a new event.
        let fresh = seen(&mut correlator, &later, 1800);
        assert_eq!((fresh.count, fresh.first), (1, at(1800)));
        assert_ne!(fresh.name, first.name);
    }

    #[test]
    fn other_messages_types_and_sources_are_other_events() {
        let mut correlator = Correlator::new(16);
        seen(&mut correlator, &occurrence("full"), 0);
        assert_eq!(seen(&mut correlator, &occurrence("tainted"), 1).count, 1);
        let mut normal = occurrence("full");
        normal.kind = Type::Normal;
        assert_eq!(seen(&mut correlator, &normal, 2).count, 1);
        let mut kubelet = occurrence("full");
        kubelet.source = Source::kubelet("sim-0");
        assert_eq!(seen(&mut correlator, &kubelet, 3).count, 1);
        let mut container = occurrence("full");
        container.object.field_path = Some("spec.containers{web}".into());
        assert_eq!(seen(&mut correlator, &container, 4).count, 1);
        assert_eq!(seen(&mut correlator, &occurrence("full"), 5).count, 2);
    }

    #[test]
    fn a_speaker_says_25_things_about_an_object_then_one_every_five_minutes() {
        let mut correlator = Correlator::new(64);
        let said = |c: &mut Correlator, o: &Occurrence, seconds| {
            observe(c, o, "web", at(seconds)).is_some()
        };
        // Repeats spend tokens too, and so do other containers of the same pod.
        for i in 0..20 {
            assert!(said(&mut correlator, &occurrence("full"), i), "{i}");
        }
        let mut container = occurrence("Started container web");
        container.object.field_path = Some("spec.containers{web}".into());
        for i in 20..25 {
            assert!(said(&mut correlator, &container, i), "{i}");
        }
        assert!(!said(&mut correlator, &occurrence("full"), 25));
        assert!(!said(&mut correlator, &occurrence("tainted"), 26));
        // Another speaker, or another object, has its own tokens.
        let mut kubelet = occurrence("full");
        kubelet.source = Source::kubelet("sim-0");
        assert!(said(&mut correlator, &kubelet, 27));
        let mut other = occurrence("full");
        other.object.uid = Some("u2".into());
        assert!(said(&mut correlator, &other, 28));
        // Five minutes earn one more; the count goes on from the last one written.
        assert!(!said(&mut correlator, &occurrence("full"), 299));
        assert_eq!(seen(&mut correlator, &occurrence("full"), 301).count, 21);
        assert!(!said(&mut correlator, &occurrence("full"), 302));
    }

    #[test]
    fn events_are_filled_as_client_go_fills_them() {
        let tally = Tally {
            name: "web.1".into(),
            count: 3,
            first: at(0),
            last: at(9),
        };
        let mut kubelet = occurrence("Started container web");
        kubelet.source = Source::kubelet("sim-0");
        kubelet.action = None;
        let event = serde_json::to_value(event(kubelet, "default", tally)).expect("json");
        assert_eq!(event["metadata"]["name"], "web.1");
        assert_eq!(event["metadata"]["namespace"], "default");
        assert_eq!(
            event["source"],
            json!({"component": "kubelet", "host": "sim-0"})
        );
        assert_eq!(event["reportingComponent"], "kubelet");
        assert_eq!(event["reportingInstance"], "sim-0");
        assert_eq!(event["count"], 3);
        assert_eq!(event["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(event["lastTimestamp"], "2023-11-14T22:13:29Z");
        assert_eq!(event["involvedObject"]["uid"], "u1");
        assert!(event.get("action").is_none());
        let scheduler = serde_json::to_value(event_of(occurrence("full"))).expect("json");
        assert_eq!(
            scheduler["source"],
            json!({"component": "default-scheduler"})
        );
        assert_eq!(scheduler["action"], "Scheduling");
        assert_eq!(
            scheduler["reportingInstance"],
            "default-scheduler-vcluster-nodesim"
        );
    }

    fn event_of(occurrence: Occurrence) -> Event {
        let tally = Tally {
            name: "x".into(),
            count: 1,
            first: at(0),
            last: at(0),
        };
        event(occurrence, "default", tally)
    }
}
