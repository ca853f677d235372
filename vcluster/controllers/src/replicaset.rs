//! The ReplicaSet controller: creates and deletes the pods a ReplicaSet controls until
//! their number is its `replicas`, and writes its status (replicas, ready, available,
//! fully labeled, observed generation).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::object::UpdateScope;
use vcluster_core::object::is_deleting;
use vcluster_core::status::Reason;

use crate::pods::{self, Availability};
use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result};

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("apps", "replicasets"));
static PODS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "pods"));

/// Queues the ReplicaSets a change concerns: a ReplicaSet's own, and a pod's controller.
pub(crate) fn watch(change: &Change, queue: &Queue) {
    crate::queue_for(change, queue, &RESOURCE, &PODS, "ReplicaSet");
}

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "replicaset-controller";

/// How many pods one reconcile creates or deletes at most (upstream's burst).
const BURST: usize = 500;

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    sync(&*api, &key).await
}

async fn sync(api: &dyn Api, key: &Key) -> Result<Requeue> {
    let Some(rs) = api
        .get(&key.tenant, &RESOURCE, Some(&key.namespace), &key.name)
        .await?
    else {
        return Ok(None);
    };
    let owned: Vec<Value> = api
        .list(&key.tenant, &PODS, Some(&key.namespace))
        .await?
        .into_iter()
        .filter(|pod| pods::controlled_by(pod, &rs))
        .collect();
    let mut active: Vec<&Value> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let wanted = usize::try_from(pods::int(&rs, "/spec/replicas", 1)).unwrap_or(0);
    let mut failure = None;
    if !is_deleting(&rs) {
        if active.len() < wanted {
            let template = &rs["spec"]["template"];
            for _ in 0..(wanted - active.len()).min(BURST) {
                let pod = pods::from_template(&rs, template);
                match crate::create_pod(api, &key.tenant, COMPONENT, &rs, pod).await {
                    Ok(_) => {}
                    // Refused by admission (a quota, a LimitRange, pod security): reported
                    // in the status, tried again later.
                    Err(e) if e.is(Reason::Forbidden) => {
                        failure = Some(e.message);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else if active.len() > wanted {
            // The least useful go first: unscheduled, then pending, then not ready.
            active.sort_by_key(|p| deletion_rank(p));
            let surplus = (active.len() - wanted).min(BURST);
            for pod in active.into_iter().take(surplus) {
                crate::delete_pod(api, &key.tenant, COMPONENT, &rs, pod).await?;
            }
        }
    }
    let again = write_status(api, &key.tenant, &rs, &owned, failure.as_deref()).await?;
    Ok(if failure.is_some() {
        Some(RETRY_REFUSED)
    } else {
        again
    })
}

/// How long a ReplicaSet whose pods admission refused waits before it tries again.
const RETRY_REFUSED: Duration = Duration::from_secs(5);

fn deletion_rank(pod: &Value) -> u8 {
    if pod.pointer("/spec/nodeName").is_none_or(Value::is_null) {
        0
    } else if pods::phase(pod) == "Pending" {
        1
    } else if !pods::is_ready(pod) {
        2
    } else {
        3
    }
}

/// Writes the status the pods come to, if it changed; when some pod will become available
/// later (`minReadySeconds`), says when to look again.
async fn write_status(
    api: &dyn Api,
    tenant: &str,
    rs: &Value,
    owned: &[Value],
    failure: Option<&str>,
) -> Result<Requeue> {
    let min_ready =
        Duration::from_secs(u64::try_from(pods::int(rs, "/spec/minReadySeconds", 0)).unwrap_or(0));
    let now = pods::now();
    let template_labels = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let (mut replicas, mut labeled, mut ready, mut available) = (0, 0, 0, 0);
    let mut again: Option<Duration> = None;
    for pod in owned.iter().filter(|p| pods::is_active(p)) {
        replicas += 1;
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        if template_labels.is_none_or(|want| {
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        }) {
            labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
        }
        match pods::available(pod, min_ready, now) {
            Availability::Yes => available += 1,
            Availability::After(left) => again = Some(again.map_or(left, |a| a.min(left))),
            Availability::No => {}
        }
    }
    let mut status = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    // `ReplicaFailure` while pods are refused, as upstream's.
    let mut conditions: Vec<Value> = rs
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "ReplicaFailure" || failure.is_some());
    if let Some(message) = failure {
        let kept = conditions
            .iter()
            .find(|c| c["type"] == "ReplicaFailure")
            .and_then(|c| c.get("lastTransitionTime").cloned());
        conditions.retain(|c| c["type"] != "ReplicaFailure");
        conditions.push(json!({
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message,
            "lastTransitionTime": kept.unwrap_or_else(|| json!(pods::stamp(now))),
        }));
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    if same_status(&rs["status"], &status) {
        return Ok(again);
    }
    let mut next = rs.clone();
    next["status"] = status;
    api.replace(tenant, &RESOURCE, &next, UpdateScope::Status)
        .await?;
    Ok(again)
}

/// Whether two statuses say the same, zero counts being the same as absent ones (the API
/// drops zero values of such fields from what it stores).
fn same_status(current: &Value, next: &Value) -> bool {
    let fields = next.as_object().into_iter().flatten();
    fields.into_iter().all(|(k, v)| {
        let have = current.get(k).unwrap_or(&Value::Null);
        have == v || (v == 0 && have.is_null())
    }) && current
        .as_object()
        .is_none_or(|c| c.keys().all(|k| next.get(k).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Case, Fake};

    /// The ReplicaSet `web` wanting `replicas` pods, its status as last written.
    fn web(replicas: i64, status: Value) -> (Resource, Value) {
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "dev", "uid": "rs-1", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": status,
        });
        (RESOURCE.clone(), rs)
    }

    /// A pod of `owner` (none: an orphan) labelled as `web`'s, in `state`: `ready`,
    /// `pending` (on a node), `unscheduled`, `succeeded` or `terminating`.
    fn pod(name: &str, owner: Option<&Value>, state: &str) -> (Resource, Value) {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "dev", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        });
        if let Some(owner) = owner {
            pod["metadata"]["ownerReferences"] = json!([pods::controller_reference(owner)]);
        }
        match state {
            "pending" => pod["status"] = json!({"phase": "Pending"}),
            "unscheduled" => {
                pod = json!({"metadata": pod["metadata"], "status": {"phase": "Pending"}})
            }
            "succeeded" => pod["status"] = json!({"phase": "Succeeded"}),
            "terminating" => pod = fake::deleting(pod),
            _ => {}
        }
        (PODS.clone(), pod)
    }

    #[tokio::test]
    async fn pods_are_made_and_deleted_until_they_match_the_replicas() {
        let (_, rs) = web(0, json!({}));
        let other = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "other", "uid": "rs-2"}});
        let steady = json!({"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1, "observedGeneration": 1});
        let fakes = fake::table(
            reconcile,
            "dev",
            "web",
            vec![
                Case {
                    name: "scaling up makes the missing pods; others' and orphans do not count",
                    given: vec![
                        web(3, json!({})),
                        pod("mine", Some(&rs), "ready"),
                        pod("orphan", None, "ready"),
                        pod("theirs", Some(&other), "ready"),
                    ],
                    writes: vec![
                        "create pods dev/web-00001",
                        "create pods dev/web-00002",
                        "update/status replicasets.apps dev/web",
                    ],
                },
                Case {
                    name: "scaling down deletes the least useful first",
                    given: vec![
                        web(1, json!({})),
                        pod("ready", Some(&rs), "ready"),
                        pod("pending", Some(&rs), "pending"),
                        pod("unscheduled", Some(&rs), "unscheduled"),
                    ],
                    writes: vec![
                        "delete pods dev/unscheduled",
                        "delete pods dev/pending",
                        "update/status replicasets.apps dev/web",
                    ],
                },
                Case {
                    name: "finished and terminating pods do not count; a steady status is kept",
                    given: vec![
                        web(1, steady),
                        pod("ready", Some(&rs), "ready"),
                        pod("done", Some(&rs), "succeeded"),
                        pod("going", Some(&rs), "terminating"),
                    ],
                    writes: vec![],
                },
                Case {
                    name: "a ReplicaSet being deleted makes no pods",
                    given: vec![(
                        RESOURCE.clone(),
                        fake::deleting(web(2, json!({"observedGeneration": 1})).1),
                    )],
                    writes: vec![],
                },
            ],
        )
        .await;
        let made = fakes[0]
            .list(fake::TENANT, &PODS, Some("dev"))
            .await
            .expect("pods");
        let rs = fakes[0]
            .object(&RESOURCE, Some("dev"), "web")
            .expect("the ReplicaSet");
        let controlled: Vec<&Value> = made
            .iter()
            .filter(|p| pods::controlled_by(p, &rs))
            .collect();
        assert_eq!(controlled.len(), 3);
        assert!(
            controlled
                .iter()
                .all(|p| p["metadata"]["labels"]["app"] == "web")
        );
        assert_eq!(
            rs["status"]["replicas"], 1,
            "the status counts the pods it saw"
        );
        assert_eq!(
            fakes[0].events(),
            [
                "Normal SuccessfulCreate: Created pod: web-00001",
                "Normal SuccessfulCreate: Created pod: web-00002"
            ]
        );
        assert_eq!(
            fakes[1].events(),
            [
                "Normal SuccessfulDelete: Deleted pod: unscheduled",
                "Normal SuccessfulDelete: Deleted pod: pending"
            ]
        );
        assert!(fakes[2].events().is_empty(), "a steady set records nothing");
    }

    #[tokio::test]
    async fn pods_refused_by_admission_are_reported_and_tried_again() {
        let api = Fake::with([web(2, json!({}))]);
        let quota =
            vcluster_core::status::ApiError::new(403, Reason::Forbidden, "exceeded quota: pods");
        api.refuse_creates(&PODS, quota);
        let (requeue, writes) = api.reconcile(reconcile, "dev", "web").await;
        // The first refusal stops the burst: the second pod is not asked for.
        assert_eq!(
            writes,
            [
                "create pods dev/web-: Forbidden",
                "update/status replicasets.apps dev/web"
            ]
        );
        assert_eq!(requeue, Some(RETRY_REFUSED));
        assert_eq!(
            api.events(),
            ["Warning FailedCreate: Error creating: exceeded quota: pods"]
        );
        let rs = api
            .object(&RESOURCE, Some("dev"), "web")
            .expect("the ReplicaSet");
        let failure = &rs["status"]["conditions"][0];
        assert_eq!(
            (&failure["type"], &failure["reason"], &failure["message"]),
            (
                &json!("ReplicaFailure"),
                &json!("FailedCreate"),
                &json!("exceeded quota: pods")
            )
        );
    }

    #[test]
    fn pods_are_named_after_and_controlled_by_their_replicaset() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "uid": "u1", "namespace": "dev"}});
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let pod = pods::from_template(&rs, &template);
        assert_eq!(pod["metadata"]["generateName"], "web-abc-");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert!(pods::controlled_by(&pod, &rs));
        assert_eq!(pod["spec"]["containers"][0]["image"], "i");
    }

    #[test]
    fn zero_counts_equal_absent_ones() {
        assert!(same_status(
            &json!({"replicas": 2, "observedGeneration": 1}),
            &json!({"replicas": 2, "readyReplicas": 0, "observedGeneration": 1})
        ));
        assert!(!same_status(
            &json!({"replicas": 2}),
            &json!({"replicas": 3})
        ));
        assert!(!same_status(
            &json!({"replicas": 2, "extra": 1}),
            &json!({"replicas": 2})
        ));
    }

    #[test]
    fn unscheduled_pods_go_first() {
        let mut pods = [
            json!({"spec": {"nodeName": "n"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"spec": {}}),
            json!({"spec": {"nodeName": "n"}, "status": {"phase": "Pending"}}),
        ];
        pods.sort_by_key(deletion_rank);
        assert!(pods[0]["spec"]["nodeName"].is_null());
        assert_eq!(pods[1]["status"]["phase"], "Pending");
    }
}
