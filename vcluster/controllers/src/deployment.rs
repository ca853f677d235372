//! The Deployment controller, after upstream's: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), the newest scaled up and the older ones down —
//! within `maxSurge`/`maxUnavailable` for `RollingUpdate`, all old pods gone first for
//! `Recreate` — revisions in the `deployment.kubernetes.io/revision` annotation (so
//! `kubectl rollout undo` revives an old ReplicaSet as the newest revision), old
//! ReplicaSets beyond `revisionHistoryLimit` deleted, `paused` respected, and the status and
//! `Available`/`Progressing` conditions that `kubectl rollout status`, `helm --wait` and
//! kstatus read, including `ProgressDeadlineExceeded`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use vcluster_core::object::UpdateScope;
use vcluster_core::object::{is_deleting, meta_str};

use crate::pods::{self, HASH_LABEL, int, same_template, scaled, template_hash};
use crate::queue::{Key, Queue};
use crate::{Api, Change, EventType, Requeue, Resource, Result, replicaset};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "deployment-controller";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("apps", "deployments"));

const REVISION: &str = "deployment.kubernetes.io/revision";

/// Queues the Deployments a change concerns: a Deployment's own, and a ReplicaSet's
/// controller.
pub(crate) fn watch(change: &Change, queue: &Queue) {
    crate::queue_for(
        change,
        queue,
        &RESOURCE,
        &replicaset::RESOURCE,
        "Deployment",
    );
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    sync(&*api, &key).await
}

/// The numbers a rollout keeps to.
struct Limits {
    replicas: i64,
    surge: i64,
    unavailable: i64,
}

impl Limits {
    fn of(d: &Value) -> Self {
        let replicas = int(d, "/spec/replicas", 1);
        let rolling = d.pointer("/spec/strategy/rollingUpdate");
        let field = |name| rolling.and_then(|r: &Value| r.get(name));
        let surge = scaled(field("maxSurge"), replicas, true, ceil_quarter(replicas));
        let mut unavailable = scaled(field("maxUnavailable"), replicas, false, replicas / 4);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Self {
            replicas,
            surge,
            unavailable: unavailable.min(replicas),
        }
    }
}

/// 25% of `n`, rounded up (the default `maxSurge`).
fn ceil_quarter(n: i64) -> i64 {
    (n + 3) / 4
}

async fn sync(api: &dyn Api, key: &Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let Some(d) = api.get(tenant, &RESOURCE, namespace, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&d) {
        return Ok(None);
    }
    let mut owned: Vec<Value> = api
        .list(tenant, &replicaset::RESOURCE, namespace)
        .await?
        .into_iter()
        .filter(|rs| pods::controlled_by(rs, &d))
        .collect();
    owned.sort_by(|a, b| created(a).cmp(created(b)));
    let template = &d["spec"]["template"];
    let (mut news, mut olds): (Vec<Value>, Vec<Value>) = owned
        .into_iter()
        .partition(|rs| same_template(&rs["spec"]["template"], template));
    let mut new = news.pop();
    olds.extend(news);
    let old_revisions = olds.iter().map(revision).max().unwrap_or(0);
    let limits = Limits::of(&d);
    let paused = d.pointer("/spec/paused") == Some(&json!(true));
    let mut created_new = false;

    if !paused {
        let recreate = d.pointer("/spec/strategy/type") == Some(&json!("Recreate"));
        let olds_running = olds
            .iter()
            .any(|rs| int(rs, "/spec/replicas", 0) > 0 || int(rs, "/status/replicas", 0) > 0);
        if recreate {
            for rs in &mut olds {
                set_replicas(api, tenant, &d, rs, 0).await?;
            }
        }
        let current = new.as_ref().map_or(0, |rs| int(rs, "/spec/replicas", 0));
        let wanted = if recreate {
            if olds_running {
                current
            } else {
                limits.replicas
            }
        } else {
            surged(&limits, current, total(olds.iter().chain(new.iter())))
        };
        match &mut new {
            Some(rs) => {
                if revision(rs) <= old_revisions {
                    // An old template came back (`rollout undo`): it is the newest revision.
                    rs["metadata"]["annotations"][REVISION] =
                        json!((old_revisions + 1).to_string());
                    *rs = api
                        .replace(tenant, &replicaset::RESOURCE, rs, UpdateScope::Main)
                        .await?;
                }
                set_replicas(api, tenant, &d, rs, wanted).await?;
            }
            None if !(recreate && olds_running) => {
                let rs = new_replicaset(&d, old_revisions + 1, wanted);
                let rs = api
                    .create(tenant, &replicaset::RESOURCE, namespace, rs)
                    .await?;
                if wanted > 0 {
                    scaled_event(api, tenant, &d, &rs, 0, wanted);
                }
                new = Some(rs);
                created_new = true;
            }
            None => {}
        }
        if !recreate && let Some(new) = &new {
            scale_down_olds(api, tenant, &d, &limits, new, &mut olds).await?;
        }
        prune_history(api, tenant, &d, &mut olds).await?;
    }
    write_status(api, tenant, &d, &limits, new.as_ref(), &olds, created_new).await
}

fn created(object: &Value) -> &str {
    meta_str(object, "creationTimestamp").unwrap_or_default()
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The sum of `spec.replicas` of ReplicaSets.
fn total<'a>(sets: impl Iterator<Item = &'a Value>) -> i64 {
    sets.map(|rs| int(rs, "/spec/replicas", 0)).sum()
}

/// The replicas of the new ReplicaSet in a rolling update: towards the Deployment's, no
/// further than `maxSurge` above it in all.
fn surged(limits: &Limits, current: i64, all: i64) -> i64 {
    if current >= limits.replicas {
        return limits.replicas;
    }
    let room = limits.replicas + limits.surge - all;
    if room <= 0 {
        return current;
    }
    current + room.min(limits.replicas - current)
}

/// Scales old ReplicaSets down as far as availability allows: first their pods that are
/// not available anyway, then available ones while `maxUnavailable` holds.
async fn scale_down_olds(
    api: &dyn Api,
    tenant: &str,
    d: &Value,
    limits: &Limits,
    new: &Value,
    olds: &mut [Value],
) -> Result<()> {
    if total(olds.iter()) == 0 {
        return Ok(());
    }
    let all = total(olds.iter()) + int(new, "/spec/replicas", 0);
    let min_available = limits.replicas - limits.unavailable;
    let new_unavailable = int(new, "/spec/replicas", 0) - available(new);
    let mut room = all - min_available - new_unavailable;
    for rs in olds.iter_mut() {
        if room <= 0 {
            break;
        }
        let replicas = int(rs, "/spec/replicas", 0);
        let unhealthy = replicas - available(rs);
        if replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = room.min(unhealthy);
        room -= down;
        set_replicas(api, tenant, d, rs, replicas - down).await?;
    }
    let available: i64 = olds.iter().chain([new]).map(available).sum();
    let mut room = available - min_available;
    for rs in olds.iter_mut() {
        if room <= 0 {
            break;
        }
        let replicas = int(rs, "/spec/replicas", 0);
        let down = replicas.min(room);
        if down > 0 {
            room -= down;
            set_replicas(api, tenant, d, rs, replicas - down).await?;
        }
    }
    Ok(())
}

/// The pods of a ReplicaSet that count as available for scaling decisions: its status's,
/// but never more than its spec allows. A ReplicaSet just scaled down still reports the
/// pods it is about to delete; counting them would let a rollout take more away than
/// `maxUnavailable` allows.
fn available(rs: &Value) -> i64 {
    int(rs, "/status/availableReplicas", 0).min(int(rs, "/spec/replicas", 0))
}

/// Scales a ReplicaSet of `d` to `replicas`, recording upstream's `ScalingReplicaSet`.
async fn set_replicas(
    api: &dyn Api,
    tenant: &str,
    d: &Value,
    rs: &mut Value,
    replicas: i64,
) -> Result<()> {
    let before = int(rs, "/spec/replicas", 0);
    if before == replicas {
        return Ok(());
    }
    rs["spec"]["replicas"] = json!(replicas);
    *rs = api
        .replace(tenant, &replicaset::RESOURCE, rs, UpdateScope::Main)
        .await?;
    scaled_event(api, tenant, d, rs, before, replicas);
    Ok(())
}

/// `Scaled up replica set web-5d4f from 1 to 3`, as upstream words it.
fn scaled_event(api: &dyn Api, tenant: &str, d: &Value, rs: &Value, from: i64, to: i64) {
    let direction = if to > from { "up" } else { "down" };
    let name = meta_str(rs, "name").unwrap_or_default();
    let message = format!("Scaled {direction} replica set {name} from {from} to {to}");
    let events = api.recorder();
    events.record(
        tenant,
        COMPONENT,
        d,
        EventType::Normal,
        "ScalingReplicaSet",
        message,
    );
}

/// Deletes the oldest idle old ReplicaSets beyond `revisionHistoryLimit` (default 10).
async fn prune_history(
    api: &dyn Api,
    tenant: &str,
    d: &Value,
    olds: &mut Vec<Value>,
) -> Result<()> {
    let limit = usize::try_from(int(d, "/spec/revisionHistoryLimit", 10)).unwrap_or(0);
    let idle =
        |rs: &Value| int(rs, "/spec/replicas", 0) == 0 && int(rs, "/status/replicas", 0) == 0;
    let mut excess = olds.len().saturating_sub(limit);
    let mut kept = Vec::with_capacity(olds.len());
    for rs in olds.drain(..) {
        if excess > 0 && idle(&rs) && !is_deleting(&rs) {
            excess -= 1;
            crate::delete_object(api, tenant, &replicaset::RESOURCE, &rs).await?;
            continue;
        }
        kept.push(rs);
    }
    *olds = kept;
    Ok(())
}

/// The ReplicaSet of the Deployment's current template.
fn new_replicaset(d: &Value, revision: i64, replicas: i64) -> Value {
    let hash = template_hash(&d["spec"]["template"], int(d, "/status/collisionCount", 0));
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations: Map<String, Value> = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", meta_str(d, "name").unwrap_or_default()),
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [pods::controller_reference(d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(d, "/spec/minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    })
}

/// Writes the Deployment's status and conditions; says when to look again for the
/// progress deadline.
async fn write_status(
    api: &dyn Api,
    tenant: &str,
    d: &Value,
    limits: &Limits,
    new: Option<&Value>,
    olds: &[Value],
    created_new: bool,
) -> Result<Requeue> {
    let sum = |pointer: &str| -> i64 { olds.iter().chain(new).map(|rs| int(rs, pointer, 0)).sum() };
    let replicas = sum("/status/replicas");
    let updated = new.map_or(0, |rs| int(rs, "/status/replicas", 0));
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let generation = d
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let before = &d["status"];
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (sum("/spec/replicas") - available).max(0),
    });
    if let Some(count) = before.get("collisionCount") {
        status["collisionCount"] = count.clone();
    }
    let now = pods::now();
    let mut conditions: Vec<Value> = before["conditions"].as_array().cloned().unwrap_or_default();
    let (state, reason, message) = if available >= limits.replicas - limits.unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_owned(),
        )
    };
    pods::set_condition(
        &mut conditions,
        "Available",
        state,
        reason,
        &message,
        now,
        true,
    );

    let name = new.and_then(|rs| meta_str(rs, "name")).unwrap_or_default();
    let complete = new.is_some()
        && updated == limits.replicas
        && replicas == limits.replicas
        && available == limits.replicas;
    let progressed = created_new
        || total_old(olds, "/status/replicas") < old_status(before)
        || updated > int(before, "/updatedReplicas", 0)
        || ready > int(before, "/readyReplicas", 0)
        || available > int(before, "/availableReplicas", 0);
    let deadline = d
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(600);
    let mut again = None;
    let previous = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    if d.pointer("/spec/paused") == Some(&json!(true)) {
        pods::set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            now,
            true,
        );
    } else if complete {
        pods::set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet {name:?} has successfully progressed."),
            now,
            true,
        );
    } else if created_new {
        pods::set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set {name:?}"),
            now,
            true,
        );
    } else if progressed
        || previous.as_ref().is_none_or(|p| {
            p["reason"] == "DeploymentPaused" || p["reason"] == "NewReplicaSetAvailable"
        })
    {
        let reason = if previous
            .as_ref()
            .is_some_and(|p| p["reason"] == "DeploymentPaused")
        {
            "DeploymentResumed"
        } else {
            "ReplicaSetUpdated"
        };
        let message = if reason == "DeploymentResumed" {
            "Deployment is resumed".to_owned()
        } else {
            format!("ReplicaSet {name:?} is progressing.")
        };
        pods::set_condition(
            &mut conditions,
            "Progressing",
            "True",
            reason,
            &message,
            now,
            true,
        );
        again = Some(Duration::from_secs(u64::try_from(deadline).unwrap_or(0)));
    } else if let Some(previous) = &previous
        && previous["reason"] != "ProgressDeadlineExceeded"
    {
        let since = previous["lastUpdateTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or(now);
        let elapsed = now.duration_since(since).as_secs();
        if elapsed >= deadline {
            pods::set_condition(
                &mut conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet {name:?} has timed out progressing."),
                now,
                true,
            );
        } else {
            again = Some(Duration::from_secs(
                u64::try_from(deadline - elapsed).unwrap_or(1),
            ));
        }
    }
    status["conditions"] = json!(conditions);
    let mut next = d.clone();
    next["status"] = status;
    if let Some(rs) = new {
        // The Deployment carries its newest revision, as upstream's does (written with the
        // status: annotations do not move its generation that way).
        if !next["metadata"]["annotations"].is_object() {
            next["metadata"]["annotations"] = json!({});
        }
        next["metadata"]["annotations"][REVISION] = json!(revision(rs).to_string());
    }
    if next == *d {
        return Ok(again);
    }
    api.replace(tenant, &RESOURCE, &next, UpdateScope::Status)
        .await?;
    Ok(again)
}

fn total_old(olds: &[Value], pointer: &str) -> i64 {
    olds.iter().map(|rs| int(rs, pointer, 0)).sum()
}

/// The old replicas the last status counted (replicas not updated).
fn old_status(before: &Value) -> i64 {
    int(before, "/replicas", 0) - int(before, "/updatedReplicas", 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Fake};

    /// The Deployment `web` wanting four pods of `image`, rolling by the defaults (25%
    /// surge, 25% unavailable: one pod each way).
    fn web(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "dev", "uid": "d-1", "generation": 1},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {},
        })
    }

    /// The name of `d`'s ReplicaSet for its current template.
    fn replicaset_of(d: &Value) -> String {
        format!("web-{}", template_hash(&d["spec"]["template"], 0))
    }

    /// `d`'s ReplicaSet for its current template at `revision`, with `replicas` pods all
    /// available.
    fn running(d: &Value, revision: i64, replicas: i64) -> Value {
        let mut rs = new_replicaset(d, revision, replicas);
        rs["metadata"]["namespace"] = json!("dev");
        rs["status"] = json!({"replicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas});
        rs
    }

    fn writes(d: &Value, verbs: &[&str]) -> Vec<String> {
        verbs
            .iter()
            .map(|verb| match *verb {
                "status" => "update/status deployments.apps dev/web".to_owned(),
                verb => format!("{verb} replicasets.apps dev/{}", replicaset_of(d)),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_new_deployment_gets_its_first_replicaset() {
        let d = web("v1");
        let api = Fake::with([(RESOURCE.clone(), d.clone())]);
        let (_, wrote) = api.reconcile(reconcile, "dev", "web").await;
        assert_eq!(wrote, writes(&d, &["create", "status"]));
        let rs = api
            .object(&replicaset::RESOURCE, Some("dev"), &replicaset_of(&d))
            .expect("made");
        assert!(pods::controlled_by(&rs, &d));
        assert_eq!((revision(&rs), int(&rs, "/spec/replicas", 0)), (1, 4));
        assert!(rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL].is_string());
        let status = api
            .object(&RESOURCE, Some("dev"), "web")
            .expect("the Deployment");
        let progressing = status["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
            .expect("Progressing");
        assert_eq!(progressing["reason"], "NewReplicaSetCreated");
        assert_eq!(
            api.events(),
            [format!(
                "Normal ScalingReplicaSet: Scaled up replica set {} from 0 to 4",
                replicaset_of(&d)
            )]
        );
    }

    #[tokio::test]
    async fn a_new_template_rolls_within_surge_and_unavailability() {
        let (before, after) = (web("v1"), web("v2"));
        let api = Fake::with([
            (RESOURCE.clone(), after.clone()),
            (replicaset::RESOURCE.clone(), running(&before, 1, 4)),
        ]);
        let (_, wrote) = api.reconcile(reconcile, "dev", "web").await;
        // One pod more than wanted (the surge) and one fewer available (the old set
        // scaled down by one): the new set starts at one, the old goes to three.
        let mut expected = writes(&after, &["create"]);
        expected.extend(writes(&before, &["update", "status"]));
        assert_eq!(wrote, expected);
        let replicas = |d: &Value| {
            let rs = api.object(&replicaset::RESOURCE, Some("dev"), &replicaset_of(d));
            let rs = rs.expect("a ReplicaSet");
            (revision(&rs), int(&rs, "/spec/replicas", 0))
        };
        assert_eq!(replicas(&after), (2, 1));
        assert_eq!(replicas(&before), (1, 3));
        assert_eq!(
            api.events(),
            [
                format!(
                    "Normal ScalingReplicaSet: Scaled up replica set {} from 0 to 1",
                    replicaset_of(&after)
                ),
                format!(
                    "Normal ScalingReplicaSet: Scaled down replica set {} from 4 to 3",
                    replicaset_of(&before)
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_paused_or_deleting_deployment_leaves_its_replicasets() {
        let before = web("v1");
        let mut paused = web("v2");
        paused["spec"]["paused"] = json!(true);
        for (d, verbs) in [
            (paused, vec!["status"]),
            (fake::deleting(web("v2")), vec![]),
        ] {
            let api = Fake::with([
                (RESOURCE.clone(), d),
                (replicaset::RESOURCE.clone(), running(&before, 1, 4)),
            ]);
            let (_, wrote) = api.reconcile(reconcile, "dev", "web").await;
            assert_eq!(wrote, writes(&before, &verbs));
        }
    }

    fn deployment(replicas: i64, rolling: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling}}})
    }

    #[test]
    fn limits_follow_upstream_rounding() {
        let l = Limits::of(&deployment(
            10,
            json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
        ));
        assert_eq!((l.surge, l.unavailable), (3, 2));
        let l = Limits::of(&deployment(3, json!({"maxSurge": 0, "maxUnavailable": 0})));
        assert_eq!((l.surge, l.unavailable), (0, 1));
        let l = Limits::of(&json!({"spec": {}}));
        assert_eq!((l.replicas, l.surge, l.unavailable), (1, 1, 0));
    }

    #[test]
    fn the_new_replicaset_grows_within_max_surge() {
        let l = Limits::of(&deployment(10, json!({"maxSurge": 3, "maxUnavailable": 2})));
        // Ten old pods: three new ones may start.
        assert_eq!(surged(&l, 0, 10), 3);
        // Thirteen in all already: wait.
        assert_eq!(surged(&l, 3, 13), 3);
        // Old ones scaled down to 5: the new one may reach 8.
        assert_eq!(surged(&l, 3, 8), 8);
        // Never beyond the Deployment's replicas.
        assert_eq!(surged(&l, 8, 8), 10);
        assert_eq!(surged(&l, 12, 12), 10);
    }

    #[test]
    fn templates_hash_alike_without_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "a"}]}});
        let mut b = a.clone();
        b["metadata"]["labels"][HASH_LABEL] = json!("xyz");
        assert!(same_template(&a, &b));
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        let mut c = a.clone();
        c["spec"]["containers"][0]["image"] = json!("b");
        assert_ne!(template_hash(&a, 0), template_hash(&c, 0));
        assert!(
            template_hash(&a, 0)
                .bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }

    #[test]
    fn templates_compare_as_decoded() {
        // As kubectl sends a template in JSON, and as it comes through protobuf.
        let json = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}});
        let protobuf = json!({"metadata": {"generation": 0, "labels": {"app": "web", HASH_LABEL: "abc"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {}, "stdin": false, "tty": false}], "hostPID": false}});
        assert!(same_template(&json, &protobuf));
        assert_eq!(template_hash(&json, 0), template_hash(&protobuf, 0));
        let other = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i", "tty": true}]}});
        assert!(!same_template(&json, &other));
    }

    #[test]
    fn conditions_keep_their_times_while_unchanged() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("t0");
        let t1: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().expect("t1");
        let mut conditions = Vec::new();
        pods::set_condition(&mut conditions, "Available", "True", "R", "m", t0, true);
        pods::set_condition(&mut conditions, "Available", "True", "R", "m", t1, true);
        assert_eq!(conditions[0]["lastUpdateTime"], "2026-01-01T00:00:00Z");
        pods::set_condition(&mut conditions, "Available", "True", "R2", "m", t1, true);
        assert_eq!(conditions[0]["lastUpdateTime"], "2026-01-01T00:01:00Z");
        assert_eq!(conditions[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conditions.len(), 1);
    }
}
