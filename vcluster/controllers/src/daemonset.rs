//! The DaemonSet controller, after upstream's: one pod on every node the template may run
//! on (the node's labels match its `nodeSelector`, its NoSchedule/NoExecute taints are
//! tolerated; a pod already there stays unless a NoExecute taint is not), none elsewhere. Pods are placed by `spec.nodeName`
//! (upstream sets a node affinity for the scheduler to honour; a simulator or a scheduler
//! would bind the same). `RollingUpdate` replaces outdated pods at most `maxUnavailable` at
//! a time; `OnDelete` waits for them to be deleted. Pods carry the template's
//! `controller-revision-hash`. A node added or removed looks at every DaemonSet of the
//! tenant again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};
use vcluster_core::object::{is_deleting, meta_str};
use vcluster_core::scheduling;

use crate::pods::{self, Availability, REVISION_LABEL, int, scaled, template_hash};
use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "daemonset-controller";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("apps", "daemonsets"));
static PODS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "pods"));
static NODES: LazyLock<Resource> = LazyLock::new(|| Resource {
    namespaced: false,
    ..Resource::builtin("", "nodes")
});

/// The key that stands for every DaemonSet of a tenant (a node came or went).
fn all_of(tenant: &Arc<str>) -> Key {
    Key {
        tenant: tenant.clone(),
        namespace: String::new(),
        name: String::new(),
    }
}

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *NODES {
        let placement = |n: &Option<Arc<Value>>| {
            n.as_ref().map(|n| {
                (
                    n.pointer("/metadata/labels").cloned(),
                    n.pointer("/spec").cloned(),
                )
            })
        };
        // Heartbeats change nothing a DaemonSet looks at.
        if placement(&change.object) != placement(&change.previous) {
            queue.add(all_of(&change.tenant));
        }
        return;
    }
    crate::queue_for(change, queue, &RESOURCE, &PODS, "DaemonSet");
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    if key.name.is_empty() {
        let mut again: Requeue = None;
        for set in api.list(&key.tenant, &RESOURCE, None).await? {
            let one = Key::of(&key.tenant, &set).expect("listed objects are named");
            if let Some(after) = sync(&*api, &one).await? {
                again = Some(again.map_or(after, |a| a.min(after)));
            }
        }
        return Ok(again);
    }
    sync(&*api, &key).await
}

/// Whether the pod template may start on `node` (taints with NoSchedule or NoExecute
/// tolerated), or (`running`) go on running there (only NoExecute counts). Cordoned nodes
/// are no obstacle: upstream's daemon pods tolerate `node.kubernetes.io/unschedulable`.
fn fits(template: &Value, node: &Value, running: bool) -> bool {
    let effects: &[&str] = if running {
        &["NoExecute"]
    } else {
        &["NoSchedule", "NoExecute"]
    };
    scheduling::selected(
        template.pointer("/spec/nodeSelector"),
        node.pointer("/metadata/labels"),
    ) && scheduling::taints_tolerated(
        template.pointer("/spec/tolerations"),
        node.pointer("/spec/taints"),
        effects,
    )
}

async fn sync(api: &dyn Api, key: &Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let Some(set) = api.get(tenant, &RESOURCE, namespace, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&set) {
        return Ok(None);
    }
    let template = &set["spec"]["template"];
    let revision = template_hash(template, int(&set, "/status/collisionCount", 0));
    let nodes = api.list(tenant, &NODES, None).await?;
    let owned: Vec<Value> = api
        .list(tenant, &PODS, namespace)
        .await?
        .into_iter()
        .filter(|pod| pods::controlled_by(pod, &set) && pods::is_active(pod))
        .collect();
    let mut on_node: HashMap<&str, Vec<&Value>> = HashMap::new();
    for pod in &owned {
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        on_node.entry(node).or_default().push(pod);
    }
    let wanted: BTreeMap<&str, &Value> = nodes
        .iter()
        .filter_map(|n| Some((meta_str(n, "name")?, n)))
        .filter(|(name, n)| fits(template, n, on_node.contains_key(name)))
        .collect();
    // Pods where none should be, and extra pods on a node.
    for (node, pods) in &on_node {
        let keep = usize::from(wanted.contains_key(node));
        for pod in pods.iter().skip(keep) {
            crate::delete_pod(api, tenant, COMPONENT, &set, pod).await?;
        }
    }
    for node in wanted.keys() {
        if !on_node.contains_key(node) {
            let mut pod = pods::from_template(&set, template);
            pod["metadata"]["labels"][REVISION_LABEL] = json!(revision);
            pod["spec"]["nodeName"] = json!(node);
            crate::create_pod(api, tenant, COMPONENT, &set, pod).await?;
        }
    }
    let outdated: Vec<&Value> = wanted
        .keys()
        .filter_map(|n| on_node.get(n).and_then(|p| p.first()).copied())
        .filter(|p| revision_of(p) != Some(revision.as_str()))
        .collect();
    let desired = i64::try_from(wanted.len()).unwrap_or(0);
    let rolling = set.pointer("/spec/updateStrategy/type") != Some(&json!("OnDelete"));
    if rolling {
        let max_unavailable = scaled(
            set.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
            desired,
            true,
            1,
        )
        .max(1);
        let unavailable = wanted
            .keys()
            .filter(|n| {
                on_node
                    .get(*n)
                    .and_then(|p| p.first())
                    .is_none_or(|p| !pods::is_ready(p))
            })
            .count();
        let room = usize::try_from(max_unavailable)
            .unwrap_or(1)
            .saturating_sub(unavailable);
        for pod in outdated.iter().filter(|p| pods::is_ready(p)).take(room) {
            crate::delete_pod(api, tenant, COMPONENT, &set, pod).await?;
        }
    }
    write_status(api, tenant, &set, &wanted, &on_node, &revision).await
}

fn revision_of(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/labels")?
        .get(REVISION_LABEL)?
        .as_str()
}

async fn write_status(
    api: &dyn Api,
    tenant: &str,
    set: &Value,
    wanted: &BTreeMap<&str, &Value>,
    on_node: &HashMap<&str, Vec<&Value>>,
    revision: &str,
) -> Result<Requeue> {
    let min_ready = std::time::Duration::from_secs(
        u64::try_from(int(set, "/spec/minReadySeconds", 0)).unwrap_or(0),
    );
    let now = pods::now();
    let scheduled: Vec<&Value> = wanted
        .keys()
        .filter_map(|n| on_node.get(n).and_then(|p| p.first()).copied())
        .collect();
    let count = |n: usize| i64::try_from(n).unwrap_or(0);
    let misscheduled = on_node.keys().filter(|n| !wanted.contains_key(*n)).count();
    let ready = scheduled.iter().filter(|p| pods::is_ready(p)).count();
    let mut again = None;
    let available = scheduled
        .iter()
        .filter(|p| match pods::available(p, min_ready, now) {
            Availability::Yes => true,
            Availability::After(left) => {
                again = Some(left);
                false
            }
            Availability::No => false,
        })
        .count();
    let updated = scheduled
        .iter()
        .filter(|p| revision_of(p) == Some(revision))
        .count();
    let status = json!({
        "observedGeneration": set.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "desiredNumberScheduled": count(wanted.len()),
        "currentNumberScheduled": count(scheduled.len()),
        "numberMisscheduled": count(misscheduled),
        "numberReady": count(ready),
        "numberAvailable": count(available),
        "numberUnavailable": count(wanted.len() - available),
        "updatedNumberScheduled": count(updated),
    });
    crate::write_status(api, tenant, &RESOURCE, set, status).await?;
    Ok(again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_go_where_they_may() {
        let node = json!({"metadata": {"labels": {"disk": "ssd"}},
            "spec": {"unschedulable": true, "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
        let plain = json!({"spec": {"containers": []}});
        assert!(!fits(&plain, &node, false), "the taint keeps new pods off");
        assert!(
            fits(&plain, &node, true),
            "a NoSchedule taint lets running pods be"
        );
        let tolerant = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}});
        assert!(
            fits(&tolerant, &node, false),
            "cordoned nodes get daemons too"
        );
        let elsewhere = json!({"spec": {"nodeSelector": {"disk": "hdd"}, "tolerations": [{"operator": "Exists"}]}});
        assert!(!fits(&elsewhere, &node, false));
    }
}
