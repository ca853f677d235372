//! Built-in defaulting: the fields kube-apiserver fills in when a client leaves them out.
//! Clients rely on them (helm dereferences a Deployment's `spec.replicas`; controllers
//! compare a ReplicaSet's pod template with its Deployment's), so every pod template gets
//! the same pod defaults wherever it appears. The values are upstream's
//! (`pkg/apis/<group>/v1/defaults.go`).

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// Sets `path` (keys from the object's root) to `value` where it is absent, creating the
/// maps on the way.
fn default(object: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for key in parents {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        at = map.entry(*key).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = at.as_object_mut() {
        map.entry(*last).or_insert(value);
    }
}

fn get_mut<'a>(object: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(object, |at, key| at.get_mut(*key))
}

/// Applies the defaults of a resource's kind to `object`.
pub fn apply(rt: &ResourceType, object: &mut Value) {
    match rt.gk() {
        ("", "Pod") => pod_spec(get_mut(object, &["spec"])),
        ("", "Namespace") => {
            // Upstream labels every namespace with its name, overwriting any other value.
            if let Some(name) = object.pointer("/metadata/name").cloned() {
                object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            }
        }
        ("", "PodTemplate") => template(object, &["template"]),
        ("", "ReplicationController") => {
            default(object, &["spec", "replicas"], json!(1));
            template(object, &["spec", "template"]);
        }
        ("", "Service") => service(object),
        ("", "Secret") => default(object, &["type"], json!("Opaque")),
        ("", "PersistentVolumeClaim") => {
            default(object, &["spec", "volumeMode"], json!("Filesystem"))
        }
        ("apps", "Deployment") => {
            default(object, &["spec", "replicas"], json!(1));
            rolling_strategy(
                object,
                "strategy",
                &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
            );
            default(object, &["spec", "revisionHistoryLimit"], json!(10));
            default(object, &["spec", "progressDeadlineSeconds"], json!(600));
            template(object, &["spec", "template"]);
        }
        ("apps", "ReplicaSet") => {
            default(object, &["spec", "replicas"], json!(1));
            template(object, &["spec", "template"]);
        }
        ("apps", "StatefulSet") => {
            default(object, &["spec", "replicas"], json!(1));
            default(
                object,
                &["spec", "podManagementPolicy"],
                json!("OrderedReady"),
            );
            rolling_strategy(object, "updateStrategy", &[("partition", json!(0))]);
            default(object, &["spec", "revisionHistoryLimit"], json!(10));
            default(
                object,
                &[
                    "spec",
                    "persistentVolumeClaimRetentionPolicy",
                    "whenDeleted",
                ],
                json!("Retain"),
            );
            default(
                object,
                &["spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"],
                json!("Retain"),
            );
            template(object, &["spec", "template"]);
        }
        ("apps", "DaemonSet") => {
            rolling_strategy(
                object,
                "updateStrategy",
                &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
            );
            default(object, &["spec", "revisionHistoryLimit"], json!(10));
            template(object, &["spec", "template"]);
        }
        ("batch", "Job") => job_spec(get_mut(object, &["spec"])),
        ("batch", "CronJob") => {
            default(object, &["spec", "concurrencyPolicy"], json!("Allow"));
            default(object, &["spec", "suspend"], json!(false));
            default(object, &["spec", "successfulJobsHistoryLimit"], json!(3));
            default(object, &["spec", "failedJobsHistoryLimit"], json!(1));
            job_spec(get_mut(object, &["spec", "jobTemplate", "spec"]));
        }
        _ => {}
    }
}

/// A strategy at `spec.<field>`: `RollingUpdate` unless set, and then with the
/// `rollingUpdate` defaults given.
fn rolling_strategy(object: &mut Value, field: &str, rolling: &[(&str, Value)]) {
    default(object, &["spec", field, "type"], json!("RollingUpdate"));
    if object.pointer(&format!("/spec/{field}/type")) == Some(&json!("RollingUpdate")) {
        for (name, value) in rolling {
            default(
                object,
                &["spec", field, "rollingUpdate", name],
                value.clone(),
            );
        }
    }
}

/// A new Job's selector, unless it asks for a manual one: its pods are labelled with the
/// Job's uid and name (upstream's generated selector, both label spellings).
pub(crate) fn job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) || !job["spec"].is_object() {
        return;
    }
    let uid = job.pointer("/metadata/uid").cloned().unwrap_or_default();
    let name = job.pointer("/metadata/name").cloned().unwrap_or_default();
    let spec = &mut job["spec"];
    if spec.get("selector").is_none_or(Value::is_null) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    if !spec["template"].is_object() {
        return;
    }
    let labels = &mut spec["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[key] = value.clone();
    }
}

fn job_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    let completions_set = spec.get("completions").is_some_and(|v| !v.is_null());
    if !completions_set && spec.get("parallelism").is_none_or(Value::is_null) {
        default(spec, &["completions"], json!(1));
    }
    default(spec, &["parallelism"], json!(1));
    default(spec, &["backoffLimit"], json!(6));
    default(spec, &["completionMode"], json!("NonIndexed"));
    default(spec, &["suspend"], json!(false));
    default(
        spec,
        &["podReplacementPolicy"],
        json!("TerminatingOrFailed"),
    );
    template(spec, &["template"]);
}

fn template(object: &mut Value, path: &[&str]) {
    let Some(template) = get_mut(object, path) else {
        return;
    };
    pod_spec(template.get_mut("spec"));
}

fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return;
    };
    default(spec, &["restartPolicy"], json!("Always"));
    default(spec, &["terminationGracePeriodSeconds"], json!(30));
    default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default(spec, &["securityContext"], json!({}));
    default(spec, &["schedulerName"], json!("default-scheduler"));
    default(spec, &["enableServiceLinks"], json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            containers.iter_mut().for_each(container);
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for volume in volumes {
            for source in ["configMap", "secret", "projected", "downwardAPI"] {
                if let Some(v) = volume.get_mut(source).filter(|v| v.is_object()) {
                    default(v, &["defaultMode"], json!(420));
                }
            }
        }
    }
}

fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    default(
        c,
        &["terminationMessagePath"],
        json!("/dev/termination-log"),
    );
    default(c, &["terminationMessagePolicy"], json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // The tag is what follows the last ':' after the last '/' (a registry port is no tag).
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t);
    let pull = if image.contains('@') {
        "IfNotPresent"
    } else if tag.is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    default(c, &["imagePullPolicy"], json!(pull));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for port in ports {
            default(port, &["protocol"], json!("TCP"));
        }
    }
}

fn service(object: &mut Value) {
    default(object, &["spec", "type"], json!("ClusterIP"));
    default(object, &["spec", "sessionAffinity"], json!("None"));
    default(object, &["spec", "internalTrafficPolicy"], json!("Cluster"));
    let external = matches!(
        object.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    if external {
        default(object, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = object.pointer_mut("/spec/ports") {
        for port in ports {
            default(port, &["protocol"], json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                default(port, &["targetPort"], number);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn a_bare_deployment_gets_upstreams_defaults() {
        let rt = &find("apps", "v1", "deployments").expect("deployments");
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "registry:5000/app:1.2"},
        ]}}}});
        apply(rt, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(
            (
                d["spec"]["revisionHistoryLimit"].clone(),
                d["spec"]["progressDeadlineSeconds"].clone()
            ),
            (json!(10), json!(600))
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(
            pod["containers"][0]["imagePullPolicy"], "Always",
            "no tag means latest"
        );
        assert_eq!(
            pod["containers"][1]["imagePullPolicy"], "IfNotPresent",
            "a registry port is not a tag"
        );
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn what_the_client_set_is_kept() {
        let rt = &find("apps", "v1", "deployments").expect("deployments");
        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        apply(rt, &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "Recreate"}),
            "no rollingUpdate for Recreate"
        );
        let job = &find("batch", "v1", "jobs").expect("jobs");
        let mut j = json!({"spec": {"parallelism": 3, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        apply(job, &mut j);
        assert!(
            j["spec"].get("completions").is_none(),
            "parallel work queues keep completions unset"
        );
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let svc = &find("", "v1", "services").expect("services");
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply(svc, &mut s);
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
