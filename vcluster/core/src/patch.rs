//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in types: what
//! `kubectl apply`, `kubectl patch`, `kubectl set image` and helm 3 upgrades send.
//!
//! It is a JSON merge patch, except that some lists are merged element by element on a
//! merge key (containers by `name`, ports by `containerPort`, ...) or as sets (finalizers),
//! and that directives steer it: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Which lists merge is a
//! fact of each Go type (its `patchStrategy`/`patchMergeKey` tags): it is recorded in
//! [`MERGE_LISTS`] by message type, and the message types of an object's fields come from
//! the protobuf schema. Written by hand: no Rust crate implements Kubernetes' strategic
//! merge.

use serde_json::{Map, Value};

use crate::protobuf::{Message, message_for};

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListMerge {
    /// Elements are objects matched on this key.
    ByKey(&'static str),
    /// Elements are scalars merged as a set.
    Set,
}

const CORE: &str = "io.k8s.api.core.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// `(message type, list field, strategy)` for every built-in list that merges. Lists of
/// conditions with a `type` merge on it everywhere (see [`strategy`]).
const MERGE_LISTS: &[(&str, &str, ListMerge)] = &[
    ("ObjectMeta", "finalizers", ListMerge::Set),
    ("ObjectMeta", "ownerReferences", ListMerge::ByKey("uid")),
    ("PodSpec", "volumes", ListMerge::ByKey("name")),
    ("PodSpec", "initContainers", ListMerge::ByKey("name")),
    ("PodSpec", "containers", ListMerge::ByKey("name")),
    ("PodSpec", "ephemeralContainers", ListMerge::ByKey("name")),
    ("PodSpec", "imagePullSecrets", ListMerge::ByKey("name")),
    ("PodSpec", "hostAliases", ListMerge::ByKey("ip")),
    (
        "PodSpec",
        "topologySpreadConstraints",
        ListMerge::ByKey("topologyKey"),
    ),
    ("PodSpec", "resourceClaims", ListMerge::ByKey("name")),
    ("PodSpec", "schedulingGates", ListMerge::ByKey("name")),
    ("Container", "ports", ListMerge::ByKey("containerPort")),
    ("Container", "env", ListMerge::ByKey("name")),
    ("Container", "volumeMounts", ListMerge::ByKey("mountPath")),
    ("Container", "volumeDevices", ListMerge::ByKey("devicePath")),
    (
        "EphemeralContainer",
        "ports",
        ListMerge::ByKey("containerPort"),
    ),
    ("EphemeralContainer", "env", ListMerge::ByKey("name")),
    (
        "EphemeralContainer",
        "volumeMounts",
        ListMerge::ByKey("mountPath"),
    ),
    (
        "EphemeralContainer",
        "volumeDevices",
        ListMerge::ByKey("devicePath"),
    ),
    ("PodStatus", "podIPs", ListMerge::ByKey("ip")),
    ("PodStatus", "hostIPs", ListMerge::ByKey("ip")),
    ("ServiceSpec", "ports", ListMerge::ByKey("port")),
    ("NodeSpec", "podCIDRs", ListMerge::Set),
    ("NodeStatus", "addresses", ListMerge::ByKey("type")),
];

fn short_name(message: &Message) -> &str {
    message
        .name
        .strip_prefix(CORE)
        .or_else(|| message.name.strip_prefix(META))
        .unwrap_or(message.name)
}

/// How `field` of a `message` merges, if it does.
pub(crate) fn strategy(message: Option<&Message>, field: &str) -> Option<ListMerge> {
    let message = message?;
    let name = short_name(message);
    if let Some((_, _, s)) = MERGE_LISTS
        .iter()
        .find(|(m, f, _)| *m == name && *f == field)
    {
        return Some(*s);
    }
    let conditions = field == "conditions"
        && message
            .child(field)
            .is_some_and(|c| c.field("type").is_some());
    conditions.then_some(ListMerge::ByKey("type"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies a strategic merge patch to an object of `apiVersion`/`kind` (a built-in type).
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let message = message_for(api_version, kind);
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    Ok(merge_map(original.clone(), patch, message)?.map_or(Value::Null, Value::Object))
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// A patch value with its directives removed (where it replaces what was there).
fn strip(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| {
                    !v.as_object()
                        .is_some_and(|m| directive(m).is_some() && m.len() == 1)
                })
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges `patch` into `original`; `None` when the patch deletes the whole map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    message: Option<&Message>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match directive(patch) {
        Some("replace") => return Ok(strip(&Value::Object(patch.clone())).as_object().cloned()),
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown patch directive {other:?}"))),
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let child = message.and_then(|m| m.child(key));
        match value {
            Value::Null => {
                original.remove(key);
            }
            Value::Object(p) => match original.remove(key) {
                Some(Value::Object(o)) => {
                    if let Some(merged) = merge_map(o, p, child)? {
                        original.insert(key.clone(), Value::Object(merged));
                    }
                }
                _ => {
                    if let Some(merged) = merge_map(Map::new(), p, child)? {
                        original.insert(key.clone(), Value::Object(merged));
                    }
                }
            },
            Value::Array(p) => {
                let merged = match (strategy(message, key), original.remove(key)) {
                    (Some(ListMerge::ByKey(merge_key)), Some(Value::Array(o))) => {
                        merge_by_key(o, p, merge_key, child)?
                    }
                    (Some(ListMerge::Set), Some(Value::Array(mut o))) => {
                        for item in p {
                            if !o.contains(item) {
                                o.push(item.clone());
                            }
                        }
                        o
                    }
                    (Some(ListMerge::ByKey(merge_key)), _) => {
                        merge_by_key(Vec::new(), p, merge_key, child)?
                    }
                    _ => strip(value).as_array().cloned().unwrap_or_default(),
                };
                original.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                original.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            let order = value.as_array().cloned().unwrap_or_default();
            let merge_key = match strategy(message, field) {
                Some(ListMerge::ByKey(k)) => Some(k),
                _ => None,
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                let position = |item: &Value| {
                    order.iter().position(|o| match merge_key {
                        Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                        None => o == item,
                    })
                };
                // Listed elements take the listed order; the others keep theirs, after.
                list.sort_by_key(|item| position(item).unwrap_or(usize::MAX));
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(original))
}

fn merge_by_key(
    mut list: Vec<Value>,
    patch: &[Value],
    key: &str,
    message: Option<&Message>,
) -> Result<Vec<Value>, PatchError> {
    let replaces = patch.iter().any(|v| {
        v.as_object()
            .is_some_and(|m| directive(m) == Some("replace") && m.len() == 1)
    });
    if replaces {
        return Ok(strip(&Value::Array(patch.to_vec()))
            .as_array()
            .cloned()
            .unwrap_or_default());
    }
    for item in patch {
        let Value::Object(p) = item else {
            list.push(item.clone());
            continue;
        };
        let Some(id) = p.get(key) else {
            return Err(PatchError(format!(
                "an element of a list merged on {key:?} has no {key:?}"
            )));
        };
        let at = list.iter().position(|o| o.get(key) == Some(id));
        match (directive(p), at) {
            (Some("delete"), Some(at)) => {
                list.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => {
                let Value::Object(o) = list.remove(at) else {
                    return Err(PatchError(format!(
                        "list element with {key}={id} is not an object"
                    )));
                };
                if let Some(merged) = merge_map(o, p, message)? {
                    list.insert(at, Value::Object(merged));
                }
            }
            (_, None) => {
                if let Some(merged) = merge_map(Map::new(), p, message)? {
                    list.push(Value::Object(merged));
                }
            }
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a"]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}},
        })
    }

    fn smp(original: &Value, patch: Value) -> Value {
        strategic_merge(original, &patch, "apps/v1", "Deployment").expect("patch applies")
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let original = deployment(json!([
            {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "envoy"},
        ]));
        let patched = smp(
            &original,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]},
            ]}}}}),
        );
        let containers = &patched["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers.as_array().map(Vec::len),
            Some(2),
            "the sidecar stays"
        );
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn directives() {
        let original =
            deployment(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
        // $patch: replace on a list replaces it.
        let replaced = smp(
            &original,
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "z"}]}}}}),
        );
        assert_eq!(
            replaced["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "z"}])
        );
        // $setElementOrder reorders.
        let ordered = smp(
            &original,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}}),
        );
        assert_eq!(
            ordered["spec"]["template"]["spec"]["containers"][0]["name"],
            "b"
        );
        // Finalizers merge as a set; $deleteFromPrimitiveList removes.
        let f = smp(&original, json!({"metadata": {"finalizers": ["b", "a"]}}));
        assert_eq!(f["metadata"]["finalizers"], json!(["a", "b"]));
        let f = smp(
            &f,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(f["metadata"]["finalizers"], json!(["b"]));
        // $retainKeys drops what it does not name; null deletes; $patch: delete on a map.
        let mut with = original.clone();
        with["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let recreate = smp(
            &with,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        let gone = smp(
            &with,
            json!({"spec": {"strategy": {"$patch": "delete"}, "replicas": null}}),
        );
        assert!(gone["spec"].get("strategy").is_none() && gone["spec"].get("replicas").is_none());
    }

    #[test]
    fn lists_without_a_strategy_are_replaced_and_conditions_merge_by_type() {
        let original = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {"template": {"spec": {"tolerations": [{"key": "a"}]}}},
            "status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}});
        let patched = smp(
            &original,
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b"}]}}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}}),
        );
        assert_eq!(
            patched["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b"}])
        );
        assert_eq!(
            patched["status"]["conditions"][0],
            json!({"type": "Available", "status": "True"})
        );
        assert_eq!(patched["status"]["conditions"][1]["type"], "Progressing");
    }

    #[test]
    fn bad_patches_are_errors() {
        let original = deployment(json!([{"name": "a"}]));
        assert!(strategic_merge(&original, &json!([1]), "apps/v1", "Deployment").is_err());
        let no_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(strategic_merge(&original, &no_key, "apps/v1", "Deployment").is_err());
        let unknown = json!({"$patch": "explode"});
        assert!(strategic_merge(&original, &unknown, "apps/v1", "Deployment").is_err());
    }
}
