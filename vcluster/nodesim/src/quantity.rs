//! What a pod asks for, read through `vcluster_core::quantity`, and its QoS class.

use k8s_openapi::api::core::v1::Pod;
use vcluster_core::quantity::{milli_of, pod_total};

/// What a pod asks for: (CPU, memory), in thousandths.
pub(crate) fn requests(pod: &Pod) -> (i128, i128) {
    let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
    (
        pod_total(&spec, "requests", "cpu"),
        pod_total(&spec, "requests", "memory"),
    )
}

/// The pod's QoS class: Guaranteed (every container's requests equal its limits for CPU and
/// memory), BestEffort (none has any), else Burstable.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let resources = &c["resources"];
        any |= ["requests", "limits"]
            .iter()
            .any(|f| resources[f].as_object().is_some_and(|m| !m.is_empty()));
        for resource in ["cpu", "memory"] {
            let limit = milli_of(&resources["limits"][resource]);
            let request = milli_of(&resources["requests"][resource]).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({ "spec": spec })).expect("pod")
    }

    #[test]
    fn requests_and_qos() {
        let burstable = pod(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1"}}},
        ]}));
        assert_eq!(requests(&burstable), (1250, 64 * 1024 * 1024 * 1000));
        assert_eq!(qos_class(&burstable), "Burstable");
        assert_eq!(
            qos_class(&pod(serde_json::json!({"containers": [{"name": "a"}]}))),
            "BestEffort"
        );
        let guaranteed = pod(serde_json::json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
        ]}));
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
    }
}
