//! The HorizontalPodAutoscaler controller, honest about having no metrics: a tenant has no
//! metrics server, so (as upstream's controller in a cluster without one) it keeps the
//! target's replicas within `minReplicas`..`maxReplicas`, and otherwise reports
//! `AbleToScale` and `ScalingActive=False` with the reason and message a metrics lookup
//! failure gets upstream (`FailedGetResourceMetric`, ...), never a made-up utilization.
//!
//! An autoscaler is looked at when it changes and every 15 s (upstream's sync period), when
//! its target may have been scaled by someone else.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::object::UpdateScope;
use vcluster_core::object::is_deleting;

use crate::pods::{self, int};
use crate::queue::{Key, Queue};
use crate::{Api, Change, EventType, Requeue, Resource, Result};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "horizontal-pod-autoscaler";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("autoscaling", "horizontalpodautoscalers"));

/// Upstream's `--horizontal-pod-autoscaler-sync-period`.
const SYNC_PERIOD: Duration = Duration::from_secs(15);

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE
        && let Some(object) = change.object.as_deref()
        && let Some(key) = Key::of(&change.tenant, object)
    {
        queue.add(key);
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let Some(hpa) = api
        .get(tenant, &RESOURCE, Some(&key.namespace), &key.name)
        .await?
    else {
        return Ok(None);
    };
    if is_deleting(&hpa) {
        return Ok(None);
    }
    let target_ref = &hpa["spec"]["scaleTargetRef"];
    let (api_version, kind, name) = (
        target_ref["apiVersion"].as_str().unwrap_or_default(),
        target_ref["kind"].as_str().unwrap_or_default(),
        target_ref["name"].as_str().unwrap_or_default(),
    );
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let target = match api.resource_of(tenant, api_version, kind).await {
        Some(resource) => match api
            .get(tenant, &resource, Some(&key.namespace), name)
            .await?
        {
            Some(found) => Ok((resource, found)),
            None if group.is_empty() => Err(format!("{} {name:?} not found", resource.plural)),
            None => Err(format!("{}.{group} {name:?} not found", resource.plural)),
        },
        None => Err(format!("no matches for kind {kind:?} in group {group:?}")),
    };
    let now = pods::now();
    let (status, rescale) = match &target {
        Ok((_, target)) => decide(&hpa, int(target, "/spec/replicas", 1), now),
        Err(why) => (unable_to_get_scale(&hpa, why, now), None),
    };
    if let (Some(replicas), Ok((resource, target))) = (rescale, &target) {
        let before = int(target, "/spec/replicas", 1);
        let mut scaled = target.clone();
        scaled["spec"]["replicas"] = json!(replicas);
        api.replace(tenant, resource, &scaled, UpdateScope::Main)
            .await?;
        // Upstream's reasons for a rescale that only the bounds asked for.
        let why = if before < replicas {
            "Current number of replicas below Spec.MinReplicas"
        } else {
            "Current number of replicas above Spec.MaxReplicas"
        };
        let message = format!("New size: {replicas}; reason: {why}");
        let events = api.recorder();
        events.record(
            tenant,
            COMPONENT,
            &hpa,
            EventType::Normal,
            "SuccessfulRescale",
            message,
        );
    }
    crate::write_status(&*api, tenant, &RESOURCE, &hpa, status).await?;
    Ok(Some(SYNC_PERIOD))
}

/// The status of `hpa` whose target has `replicas`, and the replicas to scale the target to
/// if they are out of bounds.
fn decide(hpa: &Value, replicas: i64, now: jiff::Timestamp) -> (Value, Option<i64>) {
    let min = int(hpa, "/spec/minReplicas", 1);
    let max = int(hpa, "/spec/maxReplicas", 1);
    let mut status = hpa.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions = conditions_of(&status);
    let mut set = |kind: &str, state: &str, reason: &str, message: &str| {
        pods::set_condition(&mut conditions, kind, state, reason, message, now, false);
    };
    let (desired, rescale) = if replicas == 0 && min != 0 {
        set(
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        );
        (0, None)
    } else if replicas > max || replicas < min {
        let bound = replicas.clamp(min, max);
        set(
            "AbleToScale",
            "True",
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {bound}"),
        );
        (bound, Some(bound))
    } else {
        set(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let (reason, message) = metrics_failure(hpa);
        set(
            "ScalingActive",
            "False",
            reason,
            &format!("the HPA was unable to compute the replica count: {message}"),
        );
        let desired = int(&status, "/desiredReplicas", 0);
        (desired, None)
    };
    status["currentReplicas"] = json!(replicas);
    status["desiredReplicas"] = json!(desired);
    if rescale.is_some() {
        status["lastScaleTime"] = json!(pods::stamp(now));
    }
    if is_v2(hpa) {
        // One entry per metric, each unknown: what upstream writes when it has none.
        let metrics = metrics_of(hpa).len();
        status["currentMetrics"] = json!(vec![json!({"type": ""}); metrics]);
        status["conditions"] = json!(conditions);
    }
    (status, rescale)
}

/// The status of an autoscaler whose target cannot be read.
fn unable_to_get_scale(hpa: &Value, why: &str, now: jiff::Timestamp) -> Value {
    let mut status = hpa.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions = conditions_of(&status);
    pods::set_condition(
        &mut conditions,
        "AbleToScale",
        "False",
        "FailedGetScale",
        &format!("the HPA controller was unable to get the target's current scale: {why}"),
        now,
        false,
    );
    if status.get("desiredReplicas").is_none() {
        status["desiredReplicas"] = json!(0);
        status["currentReplicas"] = json!(0);
    }
    if is_v2(hpa) {
        status["conditions"] = json!(conditions);
    }
    status
}

fn conditions_of(status: &Value) -> Vec<Value> {
    status["conditions"].as_array().cloned().unwrap_or_default()
}

/// An autoscaling/v1 object (`targetCPUUtilizationPercentage`, no conditions) or v2.
fn is_v2(hpa: &Value) -> bool {
    hpa.pointer("/spec/targetCPUUtilizationPercentage")
        .is_none()
}

/// The autoscaler's metrics; none named means 80% CPU utilization (upstream's default).
fn metrics_of(hpa: &Value) -> Vec<Value> {
    match hpa.pointer("/spec/metrics").and_then(Value::as_array) {
        Some(metrics) if !metrics.is_empty() => metrics.clone(),
        _ => vec![json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}})],
    }
}

/// Why the first metric cannot be had, as upstream's controller says it: there is no
/// resource metrics API (metrics.k8s.io), custom or external metrics API.
fn metrics_failure(hpa: &Value) -> (&'static str, String) {
    const NO_CUSTOM: &str = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
    let metrics = metrics_of(hpa);
    let metric = &metrics[0];
    let text = |pointer: &str| {
        metric
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match text("/type") {
        "Pods" => (
            "FailedGetPodsMetric",
            format!(
                "failed to get pods metric value: unable to get metric {}: {NO_CUSTOM}",
                text("/pods/metric/name")
            ),
        ),
        "Object" => (
            "FailedGetObjectMetric",
            format!(
                "failed to get object metric value: unable to get metric {}: {NO_CUSTOM}",
                text("/object/metric/name")
            ),
        ),
        "External" => (
            "FailedGetExternalMetric",
            format!(
                "failed to get external metric value: unable to get external metric {}: unable to fetch metrics from external metrics API: the server could not find the requested resource (get {}.external.metrics.k8s.io)",
                text("/external/metric/name"),
                text("/external/metric/name")
            ),
        ),
        other => {
            let (reason, source) = match other {
                "ContainerResource" => ("FailedGetContainerResourceMetric", "/containerResource"),
                _ => ("FailedGetResourceMetric", "/resource"),
            };
            let resource = text(&format!("{source}/name"));
            let resource = if resource.is_empty() { "cpu" } else { resource };
            let how = match text(&format!("{source}/target/type")) {
                "AverageValue" => "usage",
                _ => "utilization",
            };
            (
                reason,
                format!(
                    "failed to get {resource} resource metric value: failed to get {resource} {how}: unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(min: i64, max: i64, metrics: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max, "metrics": metrics}})
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .expect("condition")
    }

    #[test]
    fn within_bounds_scaling_is_inactive_for_want_of_metrics() {
        let (status, rescale) = decide(&hpa(1, 5, json!([])), 2, pods::now());
        assert_eq!(rescale, None);
        assert_eq!(
            (
                status["currentReplicas"].as_i64(),
                status["desiredReplicas"].as_i64()
            ),
            (Some(2), Some(0))
        );
        assert_eq!(status["currentMetrics"], json!([{"type": ""}]));
        assert_eq!(
            condition(&status, "AbleToScale")["reason"],
            "SucceededGetScale"
        );
        let active = condition(&status, "ScalingActive");
        assert_eq!(
            (active["status"].as_str(), active["reason"].as_str()),
            (Some("False"), Some("FailedGetResourceMetric"))
        );
        assert_eq!(
            active["message"],
            "the HPA was unable to compute the replica count: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
        );
    }

    #[test]
    fn out_of_bounds_replicas_are_brought_within_them() {
        let (status, rescale) = decide(&hpa(3, 5, json!([])), 1, pods::now());
        assert_eq!(rescale, Some(3));
        assert_eq!(status["desiredReplicas"], 3);
        assert_eq!(
            condition(&status, "AbleToScale")["reason"],
            "SucceededRescale"
        );
        assert!(status["lastScaleTime"].is_string());
        assert_eq!(decide(&hpa(1, 4, json!([])), 9, pods::now()).1, Some(4));
    }

    #[test]
    fn a_target_scaled_to_zero_disables_scaling() {
        let (status, rescale) = decide(&hpa(1, 5, json!([])), 0, pods::now());
        assert_eq!(rescale, None);
        assert_eq!(
            condition(&status, "ScalingActive")["reason"],
            "ScalingDisabled"
        );
    }

    #[test]
    fn each_metric_source_fails_with_its_own_reason() {
        let pods_metric = json!([{"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]);
        let (status, _) = decide(&hpa(1, 5, pods_metric), 2, pods::now());
        let active = condition(&status, "ScalingActive");
        assert_eq!(active["reason"], "FailedGetPodsMetric");
        assert!(
            active["message"]
                .as_str()
                .expect("a message")
                .contains("unable to get metric rps")
        );
        let memory = json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}]);
        let (status, _) = decide(&hpa(1, 5, memory), 2, pods::now());
        assert!(
            condition(&status, "ScalingActive")["message"]
                .as_str()
                .expect("a message")
                .contains("failed to get memory usage")
        );
    }

    #[test]
    fn v1_objects_get_replicas_but_no_conditions() {
        let v1 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
        let (status, _) = decide(&v1, 2, pods::now());
        assert_eq!(status, json!({"currentReplicas": 2, "desiredReplicas": 0}));
    }
}
