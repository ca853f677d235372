//! The scheduler's view of the simulated nodes: what each offers and has handed out, and
//! which node a pod fits on (nodeSelector, taints and tolerations, requests).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use serde_json::{Value, json};
use vcluster_core::scheduling;

use crate::quantity::requests;
use vcluster_core::quantity::milli;

/// What one simulated node offers.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// Kubernetes quantities, as the node reports them.
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: 110,
        }
    }
}

impl Capacity {
    pub(crate) fn as_resources(&self) -> Value {
        json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(), "ephemeral-storage": "100Gi"})
    }
}

#[derive(Debug, Default)]
struct NodeState {
    name: String,
    /// `metadata.labels` and `spec.taints`, as JSON for the shared scheduling rules.
    labels: Value,
    taints: Value,
    unschedulable: bool,
    /// (CPU, memory) allocatable, in thousandths, and pods.
    allocatable: (i128, i128, usize),
    /// (CPU, memory) requested by the pods bound to it, and how many.
    used: (i128, i128, usize),
    /// The last pod address handed out.
    last_ip: u32,
}

/// The simulated nodes and the pods on them.
#[derive(Debug)]
pub(crate) struct Nodes {
    nodes: Vec<NodeState>,
    /// uid → (node, CPU, memory) of every pod counted against a node.
    placed: HashMap<String, (usize, i128, i128)>,
}

impl Nodes {
    pub(crate) fn new(names: &[String]) -> Self {
        Self {
            nodes: names
                .iter()
                .map(|name| NodeState {
                    name: name.clone(),
                    ..NodeState::default()
                })
                .collect(),
            placed: HashMap::new(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Whether `name` is one of the simulated nodes.
    pub(crate) fn is_ours(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// Takes in a node as the API has it now (ours only); whether that changes where pods
    /// fit (its labels, taints, schedulability or allocatable resources).
    pub(crate) fn update(&mut self, node: &Node) -> bool {
        let Some(i) = self.index(&node.name_any()) else {
            return false;
        };
        let state = &mut self.nodes[i];
        let labels = serde_json::to_value(node.labels()).unwrap_or_default();
        let spec = node.spec.as_ref();
        let taints = serde_json::to_value(spec.and_then(|s| s.taints.as_ref())).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |r: &str| {
            allocatable
                .and_then(|a| a.get(r))
                .and_then(|q| milli(&q.0))
                .unwrap_or(0)
        };
        let pods = usize::try_from(get("pods") / 1000).unwrap_or(0);
        let allocatable = (get("cpu"), get("memory"), pods);
        let changed = (
            &state.labels,
            &state.taints,
            state.unschedulable,
            state.allocatable,
        ) != (&labels, &taints, unschedulable, allocatable);
        state.labels = labels;
        state.taints = taints;
        state.unschedulable = unschedulable;
        state.allocatable = allocatable;
        changed
    }

    /// Picks the least loaded node the pod fits on and counts it there; or says why none.
    pub(crate) fn place(&mut self, pod: &Pod) -> Result<String, String> {
        self.release(pod);
        let (cpu, memory) = requests(pod);
        let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
        let (mut unselected, mut tainted, mut full) = (0, 0, Vec::new());
        let mut best: Option<usize> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.unschedulable
                || !scheduling::selected(spec.get("nodeSelector"), Some(&node.labels))
            {
                unselected += 1;
                continue;
            }
            if !scheduling::taints_tolerated(
                spec.get("tolerations"),
                Some(&node.taints),
                &["NoSchedule", "NoExecute"],
            ) {
                tainted += 1;
                continue;
            }
            let (a_cpu, a_mem, a_pods) = node.allocatable;
            let (u_cpu, u_mem, u_pods) = node.used;
            let lacking: Vec<&str> = [
                (u_cpu + cpu > a_cpu, "cpu"),
                (u_mem + memory > a_mem, "memory"),
                (u_pods + 1 > a_pods, "pods"),
            ]
            .into_iter()
            .filter_map(|(short, name)| short.then_some(name))
            .collect();
            if !lacking.is_empty() {
                full.extend(lacking);
                continue;
            }
            if best.is_none_or(|b| self.nodes[b].used.2 > u_pods) {
                best = Some(i);
            }
        }
        match best {
            Some(i) => {
                self.count(pod, i, cpu, memory);
                Ok(self.nodes[i].name.clone())
            }
            None => Err(unschedulable(self.nodes.len(), unselected, tainted, &full)),
        }
    }

    fn count(&mut self, pod: &Pod, node: usize, cpu: i128, memory: i128) {
        let used = &mut self.nodes[node].used;
        used.0 += cpu;
        used.1 += memory;
        used.2 += 1;
        self.placed
            .insert(pod.uid().unwrap_or_default(), (node, cpu, memory));
    }

    /// A pod bound to `node`: its index if the node is ours (counting the pod there if it
    /// was not yet, e.g. bound by another scheduler or before a restart).
    pub(crate) fn bound(&mut self, pod: &Pod, node: &str) -> Option<usize> {
        let i = self.index(node)?;
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let counted = self.placed.get(&pod.uid().unwrap_or_default()).map(|p| p.0);
        if terminal {
            self.release(pod);
        } else if counted != Some(i) {
            self.release(pod);
            let (cpu, memory) = requests(pod);
            self.count(pod, i, cpu, memory);
        }
        Some(i)
    }

    /// Stops counting a pod against its node; whether it was counted.
    pub(crate) fn release(&mut self, pod: &Pod) -> bool {
        let Some((node, cpu, memory)) = self.placed.remove(&pod.uid().unwrap_or_default()) else {
            return false;
        };
        let used = &mut self.nodes[node].used;
        used.0 -= cpu;
        used.1 -= memory;
        used.2 -= 1;
        true
    }

    /// A fresh pod address on node `node`: `10.244.<node>.<n>`, from the node's /24.
    pub(crate) fn pod_ip(&mut self, node: usize) -> String {
        let state = &mut self.nodes[node];
        state.last_ip = state.last_ip % 253 + 1;
        format!("10.244.{node}.{}", state.last_ip + 1)
    }
}

/// What upstream's scheduler compares to tell whether an unschedulable pod changed and is
/// worth another attempt: everything but its status and bookkeeping (resourceVersion,
/// generation, managedFields, finalizers). A status written by the scheduler itself is no
/// reason to try again.
pub(crate) fn fingerprint(pod: &Pod) -> u64 {
    let mut metadata = pod.metadata.clone();
    metadata.resource_version = None;
    metadata.generation = None;
    metadata.managed_fields = None;
    metadata.finalizers = None;
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&(metadata, &pod.spec))
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// The scheduler's message when no node fits, in upstream's form.
fn unschedulable(total: usize, unselected: usize, tainted: usize, lacking: &[&str]) -> String {
    let mut reasons = Vec::new();
    for resource in ["cpu", "memory", "pods"] {
        let n = lacking.iter().filter(|r| **r == resource).count();
        if n > 0 {
            reasons.push(if resource == "pods" {
                format!("{n} Too many pods")
            } else {
                format!("{n} Insufficient {resource}")
            });
        }
    }
    if unselected > 0 {
        reasons.push(format!(
            "{unselected} node(s) didn't match Pod's node affinity/selector"
        ));
    }
    if tainted > 0 {
        reasons.push(format!("{tainted} node(s) had untolerated taint"));
    }
    format!("0/{total} nodes are available: {}.", reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "2"}},
        }))
        .expect("node")
    }

    fn pod(uid: &str, spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid}, "spec": spec}))
            .expect("pod")
    }

    fn nodes() -> Nodes {
        let mut nodes = Nodes::new(&["a".into(), "b".into()]);
        nodes.update(&node("a", json!({"disk": "ssd"}), json!([]), "1"));
        nodes.update(&node(
            "b",
            json!({}),
            json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            "4",
        ));
        nodes
    }

    #[test]
    fn pods_go_where_they_fit() {
        let mut nodes = nodes();
        let small =
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]});
        assert_eq!(nodes.place(&pod("1", small.clone())), Ok("a".into()));
        assert_eq!(nodes.place(&pod("2", small.clone())), Ok("a".into()));
        // Node a is full (CPU and pod count); b is tainted.
        let err = nodes.place(&pod("3", small.clone())).expect_err("no room");
        assert_eq!(
            err,
            "0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods, 1 node(s) had untolerated taint."
        );
        // A toleration opens b.
        let tolerant = json!({"containers": [{"name": "c"}], "tolerations": [{"key": "gpu", "operator": "Exists"}]});
        assert_eq!(nodes.place(&pod("4", tolerant)), Ok("b".into()));
        // A pod that goes frees its room.
        nodes.release(&pod("1", small.clone()));
        assert_eq!(nodes.place(&pod("5", small)), Ok("a".into()));
    }

    #[test]
    fn a_pod_changes_for_the_scheduler_only_outside_its_status() {
        let spec = json!({"containers": [{"name": "c"}]});
        let mut pod = pod("1", spec);
        let before = fingerprint(&pod);
        pod.metadata.resource_version = Some("9".into());
        pod.metadata.managed_fields = Some(Vec::new());
        pod.status = Some(serde_json::from_value(json!({"phase": "Pending"})).expect("status"));
        assert_eq!(fingerprint(&pod), before);
        pod.metadata.annotations = Some([("retry".to_owned(), "1".to_owned())].into());
        assert_ne!(fingerprint(&pod), before);
    }

    #[test]
    fn only_what_decides_placement_is_a_change() {
        let mut nodes = Nodes::new(&["a".into()]);
        let a = node("a", json!({}), json!([]), "1");
        assert!(nodes.update(&a));
        assert!(!nodes.update(&a), "the same node again");
        let mut ready = a.clone();
        ready.status.as_mut().expect("status").conditions = Some(Vec::new());
        assert!(!nodes.update(&ready), "conditions decide nothing here");
        assert!(nodes.update(&node("a", json!({"disk": "ssd"}), json!([]), "1")));
        assert!(!nodes.update(&node("other", json!({}), json!([]), "1")));
    }

    #[test]
    fn node_selectors_are_kept() {
        let mut nodes = nodes();
        let elsewhere = json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "hdd"}});
        let err = nodes.place(&pod("1", elsewhere)).expect_err("no match");
        assert!(
            err.contains("2 node(s) didn't match") || err.contains("1 node(s) didn't match"),
            "{err}"
        );
        let ssd = json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}});
        assert_eq!(nodes.place(&pod("2", ssd)), Ok("a".into()));
    }
}
