//! The StatefulSet controller, after upstream's: pods with stable names
//! (`<set>-<ordinal>`), hostnames under the governing `serviceName`, and
//! PersistentVolumeClaims made from `volumeClaimTemplates` (`<claim>-<set>-<ordinal>`,
//! kept when the pod goes). `OrderedReady` creates one pod at a time, in ordinal order,
//! each once the ones before it are Running and Ready, and removes the highest first;
//! `Parallel` does all at once. Templates are revisions (ControllerRevision objects named
//! `<set>-<hash>`; pods carry `controller-revision-hash`); a rolling update replaces pods
//! from the highest ordinal down to `partition`, one at a time, each once all are ready.
//! The status has the counts, `currentRevision`/`updateRevision` and what
//! `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::object::{is_deleting, meta_str};
use vcluster_core::status::Reason;

use crate::pods::{self, Availability, REVISION_LABEL, int, template_hash};
use crate::queue::{Key, Queue};
use crate::{Api, Change, EventType, Requeue, Resource, Result};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "statefulset-controller";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("apps", "statefulsets"));
static PODS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "pods"));
static CLAIMS: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("", "persistentvolumeclaims"));
static REVISIONS: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("apps", "controllerrevisions"));

pub(crate) fn watch(change: &Change, queue: &Queue) {
    crate::queue_for(change, queue, &RESOURCE, &PODS, "StatefulSet");
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    sync(&*api, &key).await
}

/// The ordinal of a pod of the set `set`, from its name.
fn ordinal(set: &str, pod: &Value) -> Option<i64> {
    meta_str(pod, "name")?
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn healthy(pod: &Value) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod) && !is_deleting(pod)
}

fn revision_of(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/labels")?
        .get(REVISION_LABEL)?
        .as_str()
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
    let name = key.name.as_str();
    let replicas = int(&set, "/spec/replicas", 1);
    let parallel = set.pointer("/spec/podManagementPolicy") == Some(&json!("Parallel"));
    let rolling = set.pointer("/spec/updateStrategy/type") != Some(&json!("OnDelete"));
    let partition = int(&set, "/spec/updateStrategy/rollingUpdate/partition", 0);

    let update_revision = ensure_revision(api, tenant, &set).await?;
    let current_revision = set
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .map_or_else(|| update_revision.clone(), str::to_owned);
    let owned: Vec<Value> = api
        .list(tenant, &PODS, namespace)
        .await?
        .into_iter()
        .filter(|pod| pods::controlled_by(pod, &set))
        .collect();
    let by_ordinal: BTreeMap<i64, &Value> = owned
        .iter()
        .filter_map(|p| Some((ordinal(name, p)?, p)))
        .collect();

    // Pods that finished are replaced.
    for pod in by_ordinal
        .values()
        .filter(|p| !is_deleting(p) && !pods::is_active(p))
    {
        delete_pod(api, tenant, &set, pod).await?;
    }
    let all_healthy = |upto: i64| (0..upto).all(|o| by_ordinal.get(&o).is_some_and(|p| healthy(p)));
    let mut acted = false;
    for o in 0..replicas {
        if by_ordinal.contains_key(&o) {
            continue;
        }
        if !parallel && (acted || !all_healthy(o)) {
            break;
        }
        create_claims(api, tenant, &set, o).await?;
        let revision = if o < partition {
            &current_revision
        } else {
            &update_revision
        };
        let pod = pod_for(
            &set,
            o,
            revision,
            &revision_template(api, tenant, &set, revision).await?,
        );
        let pod_name = meta_str(&pod, "name").unwrap_or_default().to_owned();
        match api.create(tenant, &PODS, namespace, pod).await {
            Ok(_) => {
                record(
                    api,
                    tenant,
                    &set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {name} successful"),
                );
                acted = true;
            }
            Err(e) if e.is(Reason::AlreadyExists) => acted = true,
            Err(e) => {
                record(
                    api,
                    tenant,
                    &set,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                        e.message
                    ),
                );
                return Err(e);
            }
        }
    }
    // Scale down, highest ordinal first.
    let surplus: Vec<&&Value> = by_ordinal.range(replicas..).rev().map(|(_, p)| p).collect();
    for pod in surplus {
        if is_deleting(pod) {
            if !parallel {
                break;
            }
            continue;
        }
        if !parallel && (acted || !all_healthy(replicas)) {
            break;
        }
        delete_pod(api, tenant, &set, pod).await?;
        acted = true;
    }
    // Rolling update: the highest outdated pod at or above the partition, once all are
    // ready.
    if rolling && !acted && all_healthy(replicas) {
        let outdated = (partition..replicas)
            .rev()
            .filter_map(|o| by_ordinal.get(&o))
            .find(|p| revision_of(p) != Some(update_revision.as_str()));
        if let Some(pod) = outdated {
            delete_pod(api, tenant, &set, pod).await?;
        }
    }
    write_status(
        api,
        tenant,
        &set,
        &owned,
        replicas,
        &current_revision,
        &update_revision,
    )
    .await
}

/// Makes sure the set's current template is a ControllerRevision; its name.
async fn ensure_revision(api: &dyn Api, tenant: &str, set: &Value) -> Result<String> {
    let template = &set["spec"]["template"];
    let name = format!(
        "{}-{}",
        meta_str(set, "name").unwrap_or_default(),
        template_hash(template, int(set, "/status/collisionCount", 0))
    );
    let namespace = meta_str(set, "namespace");
    if api
        .get(tenant, &REVISIONS, namespace, &name)
        .await?
        .is_some()
    {
        return Ok(name);
    }
    let number = api
        .list(tenant, &REVISIONS, namespace)
        .await?
        .iter()
        .filter(|r| pods::controlled_by(r, set))
        .map(|r| int(r, "/revision", 0))
        .max()
        .unwrap_or(0)
        + 1;
    let mut labels = set
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels[REVISION_LABEL] = json!(name);
    let revision = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [pods::controller_reference(set)]},
        // Upstream's form: a strategic merge patch that puts the template back whole.
        "data": {"spec": {"template": patch_replacing(template)}},
        "revision": number,
    });
    match api.create(tenant, &REVISIONS, namespace, revision).await {
        Err(e) if !e.is(Reason::AlreadyExists) => Err(e),
        _ => Ok(name),
    }
}

/// The pod template of a revision (the set's own when it is the update revision or the
/// revision is gone).
async fn revision_template(
    api: &dyn Api,
    tenant: &str,
    set: &Value,
    revision: &str,
) -> Result<Value> {
    let stored = api
        .get(tenant, &REVISIONS, meta_str(set, "namespace"), revision)
        .await?;
    let mut template = stored
        .and_then(|r| r.pointer("/data/spec/template").cloned())
        .unwrap_or_else(|| set["spec"]["template"].clone());
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    Ok(template)
}

/// A template as a strategic merge patch that replaces the template it is applied to.
fn patch_replacing(template: &Value) -> Value {
    let mut patch = template.clone();
    if let Some(map) = patch.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    patch
}

fn claim_name(template: &Value, set: &str, o: i64) -> String {
    format!(
        "{}-{set}-{o}",
        meta_str(template, "name").unwrap_or_default()
    )
}

/// The pod of ordinal `o`, at `revision` (whose template is `template`).
fn pod_for(set: &Value, o: i64, revision: &str, template: &Value) -> Value {
    let name = meta_str(set, "name").unwrap_or_default();
    let mut pod = pods::from_template(set, template);
    let metadata = &mut pod["metadata"];
    if let Some(meta) = metadata.as_object_mut() {
        meta.remove("generateName");
    }
    metadata["name"] = json!(format!("{name}-{o}"));
    metadata["labels"][REVISION_LABEL] = json!(revision);
    metadata["labels"]["statefulset.kubernetes.io/pod-name"] = json!(format!("{name}-{o}"));
    metadata["labels"]["apps.kubernetes.io/pod-index"] = json!(o.to_string());
    pod["spec"]["hostname"] = json!(format!("{name}-{o}"));
    if let Some(service) = set.pointer("/spec/serviceName").and_then(Value::as_str) {
        pod["spec"]["subdomain"] = json!(service);
    }
    for claim in set
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let volume_name = meta_str(claim, "name").unwrap_or_default();
        let volume = json!({"name": volume_name, "persistentVolumeClaim": {"claimName": claim_name(claim, name, o)}});
        let volumes = &mut pod["spec"]["volumes"];
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(list) = volumes.as_array_mut() {
            list.retain(|v| v["name"] != volume_name);
            list.push(volume);
        }
    }
    pod
}

/// The claims of ordinal `o` that do not exist yet.
async fn create_claims(api: &dyn Api, tenant: &str, set: &Value, o: i64) -> Result<()> {
    let name = meta_str(set, "name").unwrap_or_default();
    let labels = set
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for claim in set
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let body = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(claim, name, o), "labels": labels},
            "spec": claim["spec"],
        });
        let claim = meta_str(&body, "name").unwrap_or_default().to_owned();
        match api
            .create(tenant, &CLAIMS, meta_str(set, "namespace"), body)
            .await
        {
            Ok(_) => {
                let pod = format!("{name}-{o}");
                let message =
                    format!("create Claim {claim} Pod {pod} in StatefulSet {name} success");
                record(
                    api,
                    tenant,
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    message,
                );
            }
            Err(e) if !e.is(Reason::AlreadyExists) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(())
}

fn record(
    api: &dyn Api,
    tenant: &str,
    set: &Value,
    kind: EventType,
    reason: &'static str,
    message: String,
) {
    api.recorder()
        .record(tenant, COMPONENT, set, kind, reason, message);
}

/// Deletes a pod of the set, recording upstream's `SuccessfulDelete`.
async fn delete_pod(api: &dyn Api, tenant: &str, set: &Value, pod: &Value) -> Result<()> {
    crate::delete_object(api, tenant, &PODS, pod).await?;
    let pod_name = meta_str(pod, "name").unwrap_or_default();
    let set_name = meta_str(set, "name").unwrap_or_default();
    let message = format!("delete Pod {pod_name} in StatefulSet {set_name} successful");
    record(
        api,
        tenant,
        set,
        EventType::Normal,
        "SuccessfulDelete",
        message,
    );
    Ok(())
}

async fn write_status(
    api: &dyn Api,
    tenant: &str,
    set: &Value,
    owned: &[Value],
    replicas: i64,
    current_revision: &str,
    update_revision: &str,
) -> Result<Requeue> {
    let min_ready =
        Duration::from_secs(u64::try_from(int(set, "/spec/minReadySeconds", 0)).unwrap_or(0));
    let now = pods::now();
    let live: Vec<&Value> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| {
        i64::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(0)
    };
    let ready = count(&|p| pods::is_ready(p));
    let mut again = None;
    let available = count(&|p| match pods::available(p, min_ready, now) {
        Availability::Yes => true,
        Availability::After(_) | Availability::No => false,
    });
    if live
        .iter()
        .any(|p| matches!(pods::available(p, min_ready, now), Availability::After(_)))
    {
        again = Some(min_ready);
    }
    let total = i64::try_from(live.len()).unwrap_or(0);
    let updated = count(&|p| revision_of(p) == Some(update_revision));
    let mut current = count(&|p| revision_of(p) == Some(current_revision));
    let mut current_revision = current_revision.to_owned();
    // The rollout is over: the update revision is the current one.
    if updated == replicas && total == replicas && ready == replicas {
        current_revision = update_revision.to_owned();
        current = updated;
    }
    let mut status = json!({
        "observedGeneration": set.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": total,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": int(set, "/status/collisionCount", 0),
    });
    if let Some(conditions) = set.pointer("/status/conditions") {
        status["conditions"] = conditions.clone();
    }
    crate::write_status(api, tenant, &RESOURCE, set, status).await?;
    Ok(again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_have_stable_identities_and_claims() {
        let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "uid": "u"},
            "spec": {"serviceName": "db-headless",
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "data", "emptyDir": {}}]}}}});
        let pod = pod_for(&set, 2, "db-abc", &set["spec"]["template"]);
        assert_eq!(pod["metadata"]["name"], "db-2");
        assert!(pod["metadata"].get("generateName").is_none());
        assert_eq!(pod["spec"]["hostname"], "db-2");
        assert_eq!(pod["spec"]["subdomain"], "db-headless");
        assert_eq!(pod["metadata"]["labels"][REVISION_LABEL], "db-abc");
        assert_eq!(pod["metadata"]["labels"]["app"], "db");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-2"}}])
        );
        assert_eq!(ordinal("db", &pod), Some(2));
        assert_eq!(ordinal("d", &pod), None);
    }
}
