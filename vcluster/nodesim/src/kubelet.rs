//! What a simulated kubelet says: the events upstream's kubelet records when it starts
//! (`pkg/kubelet/kubelet.go`, `nodestatus/setters.go`), when it pulls images
//! (`images/image_manager.go`) and when it creates, starts and stops containers
//! (`kuberuntime/kuberuntime_container.go`), with the reasons of `pkg/kubelet/events`.
//! Containers are named by field path (`spec.containers{web}`), as upstream's container
//! references are.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, Pod};

use crate::events::{Occurrence, Source, Type, kubelet_node_reference, pod_reference};

/// The images each simulated node holds.
#[derive(Debug, Default)]
pub(crate) struct Images {
    /// (node index, image), as the pod spec names the image.
    present: HashSet<(usize, String)>,
}

impl Images {
    /// Whether node `node`'s kubelet pulls `image` for a container with pull policy
    /// `policy`: always for `Always`, the first time on that node for `IfNotPresent`, and
    /// never for `Never` (a simulated node holds every image a pod asks it never to pull,
    /// since a failing container is not simulated). The image is on the node afterwards.
    fn pulls(&mut self, node: usize, image: &str, policy: Option<&str>) -> bool {
        let absent = self.present.insert((node, image.to_owned()));
        match policy {
            Some("Always") => true,
            Some("Never") => false,
            _ => absent,
        }
    }
}

/// A kubelet event about a pod or one of its containers.
fn pod_event(
    pod: &Pod,
    node: &str,
    field_path: Option<String>,
    reason: &'static str,
    message: String,
) -> Occurrence {
    Occurrence {
        source: Source::kubelet(node),
        object: pod_reference(pod, field_path),
        kind: Type::Normal,
        reason,
        message,
        action: None,
    }
}

/// A pod's containers in the order the kubelet starts them (init containers first), each
/// with its field path and whether it keeps running (a sidecar: an init container that
/// restarts `Always`).
fn containers(pod: &Pod) -> Vec<(&Container, String, bool)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten().map(|c| {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        (c, format!("spec.initContainers{{{}}}", c.name), sidecar)
    });
    let main = spec
        .containers
        .iter()
        .map(|c| (c, format!("spec.containers{{{}}}", c.name), true));
    init.chain(main).collect()
}

/// What node `node_name` (index `node`) records while it starts a pod's containers, in
/// order: for each, the image pulled (or found present), then the container created and
/// started.
pub(crate) fn containers_started(
    pod: &Pod,
    node: usize,
    node_name: &str,
    images: &mut Images,
) -> Vec<Occurrence> {
    let mut said = Vec::new();
    for (container, path, _) in containers(pod) {
        let image = container.image.as_deref().unwrap_or_default();
        let event =
            |reason, message| pod_event(pod, node_name, Some(path.clone()), reason, message);
        if images.pulls(node, image, container.image_pull_policy.as_deref()) {
            said.push(event("Pulling", format!("Pulling image {image:?}")));
            // A simulated pull takes no time and waits for nothing.
            let took = go_duration(Duration::ZERO);
            said.push(event(
                "Pulled",
                format!(
                    "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {} bytes.",
                    image_size(image)
                ),
            ));
        } else {
            said.push(event(
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            ));
        }
        let name = &container.name;
        said.push(event("Created", format!("Created container: {name}")));
        said.push(event("Started", format!("Started container {name}")));
    }
    said
}

/// What node `node` records when a running pod is deleted: each container still running
/// is stopped.
pub(crate) fn containers_stopped(pod: &Pod, node: &str) -> Vec<Occurrence> {
    containers(pod)
        .into_iter()
        .filter(|(_, _, running)| *running)
        .map(|(container, path, _)| {
            let message = format!("Stopping container {}", container.name);
            pod_event(pod, node, Some(path), "Killing", message)
        })
        .collect()
}

/// The pressure conditions whose arrival at `False` the kubelet announces, with the
/// event's reason.
const PRESSURES: [(&str, &str); 3] = [
    ("MemoryPressure", "NodeHasSufficientMemory"),
    ("DiskPressure", "NodeHasNoDiskPressure"),
    ("PIDPressure", "NodeHasSufficientPID"),
];

/// What the kubelet of node `name` records when it starts, given the node as it was
/// before (if it was registered already): that it starts, each pressure condition that
/// is now `False` and was not, that it enforces the allocatable limits (upstream's
/// container manager does as it starts, every time), and that the node is ready if it
/// was not.
pub(crate) fn node_started(name: &str, before: Option<&Node>) -> Vec<Occurrence> {
    let event = |reason: &'static str, message: String| Occurrence {
        source: Source::kubelet(name),
        object: kubelet_node_reference(name),
        kind: Type::Normal,
        reason,
        message,
        action: None,
    };
    let was = |kind: &str, status: &str| {
        before
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .is_some_and(|c| c.status == status)
    };
    let became =
        |reason: &'static str| event(reason, format!("Node {name} status is now: {reason}"));
    let mut said = vec![event("Starting", "Starting kubelet.".to_owned())];
    for (kind, reason) in PRESSURES {
        if !was(kind, "False") {
            said.push(became(reason));
        }
    }
    said.push(event(
        "NodeAllocatableEnforced",
        "Updated Node Allocatable limit across pods".to_owned(),
    ));
    if !was("Ready", "True") {
        said.push(became("NodeReady"));
    }
    said
}

/// How Go prints a duration truncated to milliseconds (`time.Duration.String`), as the
/// kubelet's pull message does: `0s`, `431ms`, `1.5s`, `2m3.004s`, `1h0m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, minutes) = (ms / 3_600_000, ms / 60_000 % 60);
    let (seconds, fraction) = (ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// The size the simulated registry gives an image: stable for a name, between 8 and
/// 256 MiB.
fn image_size(image: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    image.hash(&mut hasher);
    (8 << 20) + hasher.finish() % (248 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "5"},
            "spec": {
                "initContainers": [
                    {"name": "setup", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"},
                    {"name": "proxy", "image": "envoy:1", "imagePullPolicy": "Never", "restartPolicy": "Always"},
                ],
                "containers": [{"name": "app", "image": "nginx", "imagePullPolicy": "Always"}],
            },
        }))
        .expect("pod")
    }

    fn said(events: &[Occurrence]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| {
                let path = e.object.field_path.clone().unwrap_or_default();
                (path, e.reason.to_owned(), e.message.clone())
            })
            .collect()
    }

    #[test]
    fn containers_start_in_upstreams_words() {
        let mut images = Images::default();
        let events = containers_started(&pod(), 0, "sim-0", &mut images);
        let size = image_size("nginx");
        let s = |p: &str, r: &str, m: &str| (p.to_owned(), r.to_owned(), m.to_owned());
        assert_eq!(
            said(&events),
            [
                s(
                    "spec.initContainers{setup}",
                    "Pulling",
                    r#"Pulling image "busybox:1.36""#
                ),
                s(
                    "spec.initContainers{setup}",
                    "Pulled",
                    &format!(
                        r#"Successfully pulled image "busybox:1.36" in 0s (0s including waiting). Image size: {} bytes."#,
                        image_size("busybox:1.36")
                    )
                ),
                s(
                    "spec.initContainers{setup}",
                    "Created",
                    "Created container: setup"
                ),
                s(
                    "spec.initContainers{setup}",
                    "Started",
                    "Started container setup"
                ),
                s(
                    "spec.initContainers{proxy}",
                    "Pulled",
                    r#"Container image "envoy:1" already present on machine"#
                ),
                s(
                    "spec.initContainers{proxy}",
                    "Created",
                    "Created container: proxy"
                ),
                s(
                    "spec.initContainers{proxy}",
                    "Started",
                    "Started container proxy"
                ),
                s(
                    "spec.containers{app}",
                    "Pulling",
                    r#"Pulling image "nginx""#
                ),
                s(
                    "spec.containers{app}",
                    "Pulled",
                    &format!(
                        r#"Successfully pulled image "nginx" in 0s (0s including waiting). Image size: {size} bytes."#
                    )
                ),
                s("spec.containers{app}", "Created", "Created container: app"),
                s("spec.containers{app}", "Started", "Started container app"),
            ]
        );
        let first = &events[0];
        assert_eq!(first.source, Source::kubelet("sim-0"));
        assert_eq!(first.object.uid.as_deref(), Some("u1"));
        assert_eq!(first.object.namespace.as_deref(), Some("shop"));
        assert_eq!(first.object.resource_version.as_deref(), Some("5"));
        // On the same node again, IfNotPresent finds its image; Always pulls again.
        let again = said(&containers_started(&pod(), 0, "sim-0", &mut images));
        assert_eq!(
            again[0].2,
            r#"Container image "busybox:1.36" already present on machine"#
        );
        assert_eq!(again[6].1, "Pulling");
        // Another node has pulled nothing yet.
        let elsewhere = said(&containers_started(&pod(), 1, "sim-1", &mut images));
        assert_eq!(elsewhere[0].1, "Pulling");
    }

    #[test]
    fn running_containers_are_stopped() {
        assert_eq!(
            said(&containers_stopped(&pod(), "sim-0")),
            [
                (
                    "spec.initContainers{proxy}".to_owned(),
                    "Killing".to_owned(),
                    "Stopping container proxy".to_owned()
                ),
                (
                    "spec.containers{app}".to_owned(),
                    "Killing".to_owned(),
                    "Stopping container app".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_node_announces_what_became_healthy() {
        let reasons = |events: Vec<Occurrence>| -> Vec<&'static str> {
            events.iter().map(|e| e.reason).collect()
        };
        let fresh = node_started("sim-0", None);
        assert_eq!(
            reasons(fresh.clone()),
            [
                "Starting",
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID",
                "NodeAllocatableEnforced",
                "NodeReady"
            ]
        );
        assert_eq!(fresh[0].message, "Starting kubelet.");
        assert_eq!(fresh[5].message, "Node sim-0 status is now: NodeReady");
        assert_eq!(fresh[5].object.uid.as_deref(), Some("sim-0"));
        assert_eq!(fresh[5].object.kind.as_deref(), Some("Node"));
        // A node already ready and healthy only says that its kubelet started again.
        let ready: Node = serde_json::from_value(json!({
            "metadata": {"name": "sim-0"},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]},
        }))
        .expect("node");
        assert_eq!(
            reasons(node_started("sim-0", Some(&ready))),
            ["Starting", "NodeAllocatableEnforced"]
        );
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::from_micros(900)), "0s");
        assert_eq!(go_duration(ms(431)), "431ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(123_004)), "2m3.004s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    }
}
