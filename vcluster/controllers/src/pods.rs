//! What the workload controllers read of pods and owner references.

use std::time::Duration;

use serde_json::{Map, Value, json};
use vcluster_core::object::{is_deleting, meta_str};

/// Not being deleted and not finished: a pod a ReplicaSet counts.
pub(crate) fn is_active(pod: &Value) -> bool {
    !is_deleting(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub(crate) fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The pod's condition of `kind`, if it has one.
fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

pub(crate) fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Whether the pod has been ready for `min_ready` as of `now`; if it is ready but not for
/// long enough yet, how long until it will have been.
pub(crate) fn available(pod: &Value, min_ready: Duration, now: jiff::Timestamp) -> Availability {
    let Some(ready) = condition(pod, "Ready").filter(|c| c["status"] == "True") else {
        return Availability::No;
    };
    if min_ready.is_zero() {
        return Availability::Yes;
    }
    let since = ready["lastTransitionTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or(now);
    let elapsed = now.duration_since(since).unsigned_abs();
    match min_ready.checked_sub(elapsed) {
        Some(left) if !left.is_zero() => Availability::After(left),
        _ => Availability::Yes,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Yes,
    No,
    /// Ready, and available after this long.
    After(Duration),
}

/// The owner reference marked `controller`, if any.
pub(crate) fn controller_of(object: &Value) -> Option<&Value> {
    owner_references(object).find(|r| r["controller"] == true)
}

pub(crate) fn owner_references(object: &Value) -> impl Iterator<Item = &Value> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether `owner` (by uid) controls `object`.
pub(crate) fn controlled_by(object: &Value, owner: &Value) -> bool {
    let uid = meta_str(owner, "uid");
    uid.is_some() && controller_of(object).is_some_and(|r| r["uid"].as_str() == uid)
}

/// The reference a controller puts on what it creates.
pub(crate) fn controller_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A new pod of `owner` from `template`: named after the owner, controlled by it.
pub(crate) fn from_template(owner: &Value, template: &Value) -> Value {
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    let name = meta_str(owner, "name").unwrap_or_default();
    metadata["generateName"] = json!(format!("{name}-"));
    metadata["ownerReferences"] = json!([controller_reference(owner)]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

/// The number an int-or-percent field comes to out of `total` (percentages rounded up or
/// down as the caller says); `default` when absent.
pub(crate) fn scaled(value: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) if round_up => (percent * total + 99) / 100,
            Some(percent) => percent * total / 100,
            None => default,
        },
        _ => default,
    }
}

/// An integer field, or `default`.
pub(crate) fn int(object: &Value, pointer: &str, default: i64) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

pub(crate) fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A timestamp as the API writes them (RFC 3339, whole seconds, UTC).
pub(crate) fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The label a Deployment's ReplicaSets and their pods carry their template's hash in.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// The label StatefulSets and DaemonSets mark their pods' revision with.
pub(crate) const REVISION_LABEL: &str = "controller-revision-hash";

/// A pod template without the `pod-template-hash` label, and without what Go's decoding
/// would not tell from absent (null, false, 0, "", empty lists and maps): templates are
/// compared as upstream compares them, decoded, so one sent as JSON and one sent as
/// protobuf (which carries zero values) are the same template.
fn without_hash(template: &Value) -> Value {
    let mut template = semantic(template).unwrap_or(Value::Null);
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        labels.remove(REVISION_LABEL);
    }
    template
}

/// `value` without its zero values; `None` if it is one.
fn semantic(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(b) => b.then_some(Value::Bool(true)),
        Value::Number(n) => (n.as_f64() != Some(0.0)).then(|| value.clone()),
        Value::String(s) => (!s.is_empty()).then(|| value.clone()),
        Value::Array(items) => (!items.is_empty()).then(|| {
            Value::Array(
                items
                    .iter()
                    .map(|i| semantic(i).unwrap_or(Value::Null))
                    .collect(),
            )
        }),
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), semantic(v)?)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
    }
}

pub(crate) fn same_template(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

/// The hash a template's ReplicaSet is named and labelled by: FNV-1a (as upstream) over the
/// template's canonical JSON and the collision count, spelled in upstream's safe alphabet.
pub(crate) fn template_hash(template: &Value, collisions: i64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let canonical = serde_json::to_vec(&without_hash(template)).expect("JSON serializes");
    for byte in canonical.iter().chain(collisions.to_string().as_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Sets a condition, keeping its transition time when its status did not change and (for
/// kinds whose conditions have one, `update_time`) its update time when nothing about it
/// did.
pub(crate) fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
    update_time: bool,
) {
    let stamp = stamp(now);
    let mut next = json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": stamp,
    });
    if update_time {
        next["lastUpdateTime"] = json!(stamp);
    }
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(current) => {
            if current["status"] == status {
                next["lastTransitionTime"] = current["lastTransitionTime"].clone();
                if update_time && current["reason"] == reason && current["message"] == message {
                    next["lastUpdateTime"] = current["lastUpdateTime"].clone();
                }
            }
            *current = next;
        }
        None => conditions.push(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounds_as_told() {
        assert_eq!(scaled(Some(&json!("25%")), 10, true, 0), 3);
        assert_eq!(scaled(Some(&json!("25%")), 10, false, 0), 2);
        assert_eq!(scaled(Some(&json!(2)), 10, false, 0), 2);
        assert_eq!(scaled(None, 10, false, 7), 7);
        assert_eq!(scaled(Some(&json!("x%")), 10, false, 7), 7);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().expect("time");
        let pod = |status: &str| {
            json!({"status": {"conditions": [
                {"type": "Ready", "status": status, "lastTransitionTime": "2026-01-01T00:00:05Z"}
            ]}})
        };
        assert_eq!(
            available(&pod("True"), Duration::ZERO, now),
            Availability::Yes
        );
        assert_eq!(
            available(&pod("True"), Duration::from_secs(5), now),
            Availability::Yes
        );
        assert_eq!(
            available(&pod("True"), Duration::from_secs(8), now),
            Availability::After(Duration::from_secs(3))
        );
        assert_eq!(
            available(&pod("False"), Duration::ZERO, now),
            Availability::No
        );
    }
}
