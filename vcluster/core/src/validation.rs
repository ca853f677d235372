//! Validation of built-in objects beyond their names: the rules whose breach upstream
//! answers with 422 and that clients and controllers depend on (a workload's selector must
//! select its own pods, a container needs a name and an image, ...). Messages follow
//! upstream's (`spec.template.metadata.labels: Invalid value: ...`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::names::{config_key_errors, is_dns_label, label_value_errors, qualified_name_errors};
use crate::registry::ResourceType;
use crate::selector::{LabelSelector, labels_at};
use crate::status::Cause;

/// The causes that make `object` invalid; empty when it is valid.
pub fn validate(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(object, &mut causes);
    match rt.gk() {
        ("", "Pod") => pod_spec(object.get("spec"), "spec", &mut causes),
        ("", "PodTemplate") => pod_spec(
            object.pointer("/template/spec"),
            "template.spec",
            &mut causes,
        ),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workload(object, &mut causes);
            replicas(object, &mut causes);
        }
        ("batch", "Job") => pod_spec(
            object.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut causes,
        ),
        ("batch", "CronJob") => {
            if object
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required("spec.schedule", ""));
            }
            pod_spec(
                object.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        ("", "Service") => service(object, &mut causes),
        ("", "ConfigMap") => config_map_data(object, &mut causes),
        ("", "Secret") => secret_data(object, &mut causes),
        ("apiregistration.k8s.io", "APIService") => api_service(object, &mut causes),
        _ => {}
    }
    causes
}

/// An APIService is named `<version>.<group>` after what it serves, and ranks it.
fn api_service(object: &Value, causes: &mut Vec<Cause>) {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (group, version) = (text("/spec/group"), text("/spec/version"));
    let name = text("/metadata/name");
    if version.is_empty() {
        causes.push(Cause::required("spec.version", ""));
    }
    let expected = format!("{version}.{group}");
    if name != expected {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be `spec.version+\".\"+spec.group`: {expected:?}"),
        ));
    }
    for (field, most) in [("groupPriorityMinimum", 20000), ("versionPriority", 1000)] {
        let value = object
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if !(1..=most).contains(&value) {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                &value.to_string(),
                &format!("must be positive and less than {}", most + 1),
            ));
        }
    }
}

fn replicas(object: &Value, causes: &mut Vec<Cause>) {
    if let Some(r) = object.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &r.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// A workload's selector is required and must select the labels of its pod template.
fn workload(object: &Value, causes: &mut Vec<Cause>) {
    let template_labels = labels_at(object, "/spec/template/metadata/labels");
    match object.pointer("/spec/selector") {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector", "")),
        Some(selector) => {
            let empty = selector
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
                && selector
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(|e| e.is_empty());
            if empty {
                causes.push(Cause::invalid(
                    "spec.selector",
                    "{}",
                    "empty selector is invalid for deployment",
                ));
            } else if !selects(selector, &template_labels) {
                let labels = template_labels
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &format!("map[{labels}]"),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    pod_spec(
        object.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

/// Whether a `metav1.LabelSelector` selects `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    LabelSelector::from_object(selector).is_ok_and(|s| s.matches(labels))
}

fn pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(Cause::required(path, ""));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(format!("{path}.containers"), ""));
    }
    for list in ["containers", "initContainers"] {
        let mut seen = Vec::new();
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{path}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(format!("{at}.name"), "")),
                Some(name) if !is_dns_label(name) => causes.push(Cause::invalid(
                    format!("{at}.name"),
                    name,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
                )),
                Some(name) if seen.contains(&name) => causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{at}.name"),
                    message: format!("Duplicate value: {name:?}"),
                }),
                Some(name) => seen.push(name),
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required(format!("{at}.image"), ""));
            }
        }
    }
}

fn service(object: &Value, causes: &mut Vec<Cause>) {
    let kind = object
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.type".into(),
            message: format!(
                "Unsupported value: {kind:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
        });
    }
    let headless = object.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let ports = object.pointer("/spec/ports").and_then(Value::as_array);
    if kind != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        causes.push(Cause::required("spec.ports", ""));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

/// The most annotations may hold, keys and values together (`TotalAnnotationSizeLimitB`).
const MAX_ANNOTATIONS: usize = 256 << 10;

/// The most a ConfigMap's or Secret's data may hold (`MaxSecretSize`).
const MAX_DATA: usize = 1 << 20;

/// A value over its limit, as upstream's `field.TooLong` says it.
fn too_long(field: &str, most: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        field: field.to_owned(),
        message: format!("Too long: must have at most {most} bytes"),
    }
}

/// What upstream's `ValidateObjectMeta` checks of every object's labels and annotations.
fn metadata(object: &Value, causes: &mut Vec<Cause>) {
    let map = |field: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    };
    for (key, value) in map("labels") {
        for message in qualified_name_errors(key) {
            causes.push(Cause::invalid("metadata.labels", key, &message));
        }
        let value = value.as_str().unwrap_or_default();
        for message in label_value_errors(value) {
            causes.push(Cause::invalid("metadata.labels", value, &message));
        }
    }
    let mut size = 0;
    for (key, value) in map("annotations") {
        // Annotation keys are qualified names in any case.
        for message in qualified_name_errors(&key.to_lowercase()) {
            causes.push(Cause::invalid("metadata.annotations", key, &message));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > MAX_ANNOTATIONS {
        causes.push(too_long("metadata.annotations", MAX_ANNOTATIONS));
    }
}

/// The keys of `field` that are not config keys, as causes at `data[key]`.
fn config_keys<'a>(
    object: &'a Value,
    field: &str,
    causes: &mut Vec<Cause>,
) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
    let entries = object.get(field).and_then(Value::as_object);
    for key in entries.into_iter().flatten().map(|(k, _)| k) {
        for message in config_key_errors(key) {
            causes.push(Cause::invalid(format!("{field}[{key}]"), key, &message));
        }
    }
    entries.into_iter().flatten()
}

/// A ConfigMap's keys, in `data` or `binaryData` but not both, and its size.
fn config_map_data(object: &Value, causes: &mut Vec<Cause>) {
    let binary = object.get("binaryData").and_then(Value::as_object);
    let data = object.get("data").and_then(Value::as_object);
    let mut size = 0;
    for (key, value) in config_keys(object, "data", causes) {
        if binary.is_some_and(|b| b.contains_key(key)) {
            let detail = "duplicate of key present in binaryData";
            causes.push(Cause::invalid(format!("data[{key}]"), key, detail));
        }
        size += value.as_str().map_or(0, str::len);
    }
    for (key, value) in config_keys(object, "binaryData", causes) {
        if data.is_some_and(|d| d.contains_key(key)) {
            let detail = "duplicate of key present in data";
            causes.push(Cause::invalid(format!("binaryData[{key}]"), key, detail));
        }
        size += value.as_str().map_or(0, decoded_len);
    }
    if size > MAX_DATA {
        causes.push(too_long("", MAX_DATA));
    }
}

/// A Secret's keys and size; `stringData` is part of its `data` (upstream merges them).
fn secret_data(object: &Value, causes: &mut Vec<Cause>) {
    let mut size = 0;
    for (_, value) in config_keys(object, "data", causes) {
        size += value.as_str().map_or(0, decoded_len);
    }
    for (_, value) in config_keys(object, "stringData", causes) {
        size += value.as_str().map_or(0, str::len);
    }
    if size > MAX_DATA {
        causes.push(too_long("data", MAX_DATA));
    }
}

/// The length of the bytes base64 text holds (typed decoding checked it is base64).
fn decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    #[test]
    fn a_deployment_whose_selector_misses_its_pods_is_invalid() {
        let rt = &find("apps", "v1", "deployments").expect("deployments");
        let good = json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        assert!(validate(rt, &good).is_empty());
        let mut bad = good.clone();
        bad["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        let causes = validate(rt, &bad);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        let mut no_image = good.clone();
        no_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_eq!(
            validate(rt, &no_image)[0].field,
            "spec.template.spec.containers[0].image"
        );
        let mut no_selector = good;
        no_selector["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("selector");
        assert_eq!(validate(rt, &no_selector)[0].field, "spec.selector");
    }

    #[test]
    fn services_and_config_keys() {
        let svc = &find("", "v1", "services").expect("services");
        assert!(validate(svc, &json!({"spec": {"ports": [{"port": 80}]}})).is_empty());
        assert!(
            validate(svc, &json!({"spec": {"clusterIP": "None"}})).is_empty(),
            "headless needs no ports"
        );
        assert_eq!(
            validate(svc, &json!({"spec": {"ports": [{"port": 0}]}}))[0].field,
            "spec.ports[0].port"
        );
        assert_eq!(
            validate(
                svc,
                &json!({"spec": {"type": "Magic", "ports": [{"port": 1}]}})
            )[0]
            .reason,
            "FieldValueNotSupported"
        );
        let cm = &find("", "v1", "configmaps").expect("configmaps");
        assert!(validate(cm, &json!({"data": {"a.conf": "x"}})).is_empty());
        assert_eq!(
            validate(cm, &json!({"data": {"bad key": "x"}}))[0].field,
            "data[bad key]"
        );
    }

    #[test]
    fn labels_annotations_and_data_are_held_to_upstreams_limits() {
        let cm = &find("", "v1", "configmaps").expect("configmaps");
        let fields = |object: Value| -> Vec<(String, &'static str)> {
            validate(cm, &object)
                .into_iter()
                .map(|c| (c.field, c.reason))
                .collect()
        };
        let invalid = "FieldValueInvalid";
        assert_eq!(
            fields(json!({"metadata": {"labels": {"bad key": "x", "ok": "bad value"}}})),
            vec![
                ("metadata.labels".to_owned(), invalid),
                ("metadata.labels".to_owned(), invalid)
            ]
        );
        assert!(
            fields(
                json!({"metadata": {"labels": {"example.com/App": "v-1", "e": ""},
            "annotations": {"Example.com/Key": "any value at all"}}})
            )
            .is_empty()
        );
        let big = "x".repeat(256 << 10);
        assert_eq!(
            fields(json!({"metadata": {"annotations": {"a": big}}})),
            vec![("metadata.annotations".to_owned(), "FieldValueTooLong")]
        );
        let mib = "x".repeat(1 << 20);
        assert!(fields(json!({"data": {"a": mib}})).is_empty(), "1 MiB fits");
        assert_eq!(
            fields(json!({"data": {"a": mib, "b": "x"}})),
            vec![(String::new(), "FieldValueTooLong")]
        );
        assert_eq!(
            fields(json!({"data": {"a": "x"}, "binaryData": {"a": "eA=="}})),
            vec![
                ("data[a]".to_owned(), invalid),
                ("binaryData[a]".to_owned(), invalid)
            ]
        );
        let secret = &find("", "v1", "secrets").expect("secrets");
        let encoded = "eHh4".repeat((1 << 20) / 3 + 1);
        let causes = validate(secret, &json!({"data": {"a": encoded}}));
        assert_eq!(causes[0].field, "data");
        assert_eq!(
            causes[0].message,
            "Too long: must have at most 1048576 bytes"
        );
    }
}
