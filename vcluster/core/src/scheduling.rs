//! Where a pod may run, as upstream's scheduler decides it for node selectors and taints:
//! shared by the DaemonSet controller and the node simulator's scheduler.

use serde_json::Value;

/// Whether `toleration` tolerates `taint` (upstream's matching: the effect if given, the key
/// if given, then `Exists`, or `Equal` with the same value; an empty key with `Exists`
/// tolerates every taint).
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let text = |v: &Value, field: &str| v[field].as_str().unwrap_or("").to_owned();
    let effect = text(toleration, "effect");
    if !effect.is_empty() && effect != text(taint, "effect") {
        return false;
    }
    let key = text(toleration, "key");
    if !key.is_empty() && key != text(taint, "key") {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        _ => !key.is_empty() && text(toleration, "value") == text(taint, "value"),
    }
}

/// Whether a node's taints (`spec.taints`) with one of `effects` are all tolerated by
/// `tolerations` (a pod spec's list).
pub fn taints_tolerated(
    tolerations: Option<&Value>,
    taints: Option<&Value>,
    effects: &[&str],
) -> bool {
    let tolerations: Vec<&Value> = tolerations
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    taints
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| effects.iter().any(|e| t["effect"] == *e))
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Whether a node's labels carry every pair of a pod's `nodeSelector`.
pub fn selected(node_selector: Option<&Value>, labels: Option<&Value>) -> bool {
    node_selector
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerations_match_as_upstream() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        let tol = |key: &str, op: &str, value: &str, effect: &str| json!({"key": key, "operator": op, "value": value, "effect": effect});
        assert!(tolerates(&tol("k", "Equal", "v", "NoSchedule"), &taint));
        assert!(tolerates(&tol("k", "Equal", "v", ""), &taint));
        assert!(tolerates(&tol("", "Exists", "", ""), &taint));
        assert!(
            tolerates(&json!({"key": "k", "value": "v"}), &taint),
            "Equal by default"
        );
        assert!(!tolerates(&tol("k", "Equal", "w", ""), &taint));
        assert!(!tolerates(&tol("k", "Exists", "", "NoExecute"), &taint));
        let taints = json!([taint, {"key": "soft", "effect": "PreferNoSchedule"}]);
        assert!(!taints_tolerated(None, Some(&taints), &["NoSchedule"]));
        assert!(taints_tolerated(None, Some(&taints), &["NoExecute"]));
        assert!(taints_tolerated(
            Some(&json!([tol("k", "Exists", "", "")])),
            Some(&taints),
            &["NoSchedule"]
        ));
    }

    #[test]
    fn node_selectors_need_every_label() {
        let labels = json!({"disk": "ssd", "zone": "a"});
        assert!(selected(None, Some(&labels)));
        assert!(selected(Some(&json!({"disk": "ssd"})), Some(&labels)));
        assert!(!selected(Some(&json!({"disk": "hdd"})), Some(&labels)));
        assert!(!selected(Some(&json!({"disk": "ssd"})), None));
    }
}
