//! The endpoints controllers, after upstream's two: for every Service with a selector, an
//! `Endpoints` object of the same name and an EndpointSlice (`<service>-<suffix>`, labelled
//! `kubernetes.io/service-name`, owned by the Service) listing the pods it selects that
//! have an address: ready ones as ready addresses, the others as not ready (or ready, with
//! `publishNotReadyAddresses`). Ports are resolved per pod (a named `targetPort` through
//! the pod's container ports); pods resolving to different ports make different subsets.
//! A Service's deletion takes its `Endpoints` with it (the slices go with their owner).
//! Services without a selector are left to whoever manages their endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};
use vcluster_core::object::UpdateScope;
use vcluster_core::object::{is_deleting, meta_str};
use vcluster_core::selector::{LabelSelector, labels_at};
use vcluster_core::status::Reason;

use crate::pods::{self, controlled_by};
use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result};

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("", "services"));
static PODS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "pods"));
static ENDPOINTS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "endpoints"));
static SLICES: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("discovery.k8s.io", "endpointslices"));

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";

/// What of a pod its endpoints show.
fn endpoint_view(pod: &Value) -> Value {
    json!([
        pod.pointer("/metadata/labels"),
        pod.pointer("/status/podIP"),
        pods::is_ready(pod),
        is_deleting(pod),
        pod.pointer("/spec/nodeName"),
        pods::phase(pod),
    ])
}

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE {
        if let Some(key) = change
            .object
            .as_deref()
            .or(change.previous.as_deref())
            .and_then(|o| Key::of(&change.tenant, o))
        {
            queue.add(key);
        }
    } else if change.resource == *PODS {
        let view = |p: &Option<Arc<Value>>| p.as_deref().map(endpoint_view);
        if view(&change.object) != view(&change.previous)
            && let Some(namespace) = &change.namespace
        {
            // Every Service of the namespace may select it: the empty name stands for all.
            queue.add(Key {
                tenant: change.tenant.clone(),
                namespace: namespace.clone(),
                name: String::new(),
            });
        }
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    if key.name.is_empty() {
        let services = api.list(tenant, &RESOURCE, namespace).await?;
        // Most namespaces have no Service with a selector: no pods to read then.
        if services.iter().any(|s| selected(s, &[]).is_some()) {
            let pods = api.list(tenant, &PODS, namespace).await?;
            for service in services {
                sync_service(&*api, tenant, &service, &pods).await?;
            }
        }
        return Ok(None);
    }
    match api.get(tenant, &RESOURCE, namespace, &key.name).await? {
        Some(service) => {
            let pods = api.list(tenant, &PODS, namespace).await?;
            sync_service(&*api, tenant, &service, &pods).await?;
        }
        None => match api
            .delete(tenant, &ENDPOINTS, namespace, &key.name, json!({}))
            .await
        {
            Err(e) if !e.is(Reason::NotFound) => return Err(e),
            _ => {}
        },
    }
    Ok(None)
}

/// The pods the Service selects, if it has a selector.
fn selected<'a>(service: &Value, pods: &'a [Value]) -> Option<Vec<&'a Value>> {
    let selector = service
        .pointer("/spec/selector")
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))?;
    let selector = LabelSelector::from_object(&json!({"matchLabels": selector})).ok()?;
    Some(
        pods.iter()
            .filter(|p| {
                selector.matches(&labels_at(p, "/metadata/labels"))
                    && p.pointer("/status/podIP")
                        .and_then(Value::as_str)
                        .is_some_and(|ip| !ip.is_empty())
                    && pods::is_active(p)
            })
            .collect(),
    )
}

/// A Service port's number on `pod`: its `targetPort`, or the container port of that name.
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod
            .pointer("/spec/containers")?
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())?
            .get("containerPort")?
            .as_i64(),
        _ => port["port"].as_i64(),
    }
}

/// The ports of the Service on `pod`, as endpoint ports.
fn ports_on(service: &Value, pod: &Value) -> Vec<Value> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let mut out = json!({"port": target_port(port, pod)?, "protocol": port["protocol"].as_str().unwrap_or("TCP")});
            if let Some(name) = port["name"].as_str().filter(|n| !n.is_empty()) {
                out["name"] = json!(name);
            }
            if let Some(app) = port["appProtocol"].as_str() {
                out["appProtocol"] = json!(app);
            }
            Some(out)
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": meta_str(pod, "namespace"), "name": meta_str(pod, "name"), "uid": meta_str(pod, "uid")})
}

/// An Endpoints subset being built: its ports, ready and not ready addresses.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

async fn sync_service(api: &dyn Api, tenant: &str, service: &Value, pods: &[Value]) -> Result<()> {
    let Some(selected) = selected(service, pods) else {
        return Ok(());
    };
    let publish = service.pointer("/spec/publishNotReadyAddresses") == Some(&json!(true));
    // Endpoints: one subset per set of resolved ports.
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in &selected {
        let ports = ports_on(service, pod);
        let entry = subsets
            .entry(serde_json::to_string(&ports).unwrap_or_default())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        let mut address = json!({"ip": pod["status"]["podIP"], "targetRef": target_ref(pod)});
        if let Some(node) = pod.pointer("/spec/nodeName") {
            address["nodeName"] = node.clone();
        }
        if let Some(host) = pod.pointer("/spec/hostname") {
            address["hostname"] = host.clone();
        }
        if pods::is_ready(pod) || publish {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    let name = meta_str(service, "name").unwrap_or_default();
    let namespace = meta_str(service, "namespace");
    let mut labels = service["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["endpoints.kubernetes.io/managed-by"] = json!("endpoint-controller");
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "subsets": subsets,
    });
    put(api, tenant, &ENDPOINTS, endpoints, |current, next| {
        current.get("subsets") == next.get("subsets")
            && current.pointer("/metadata/labels") == next.pointer("/metadata/labels")
    })
    .await?;

    let endpoints: Vec<Value> = selected
        .iter()
        .map(|pod| {
            let ready = pods::is_ready(pod);
            let mut endpoint = json!({
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready || publish, "serving": ready, "terminating": false},
                "targetRef": target_ref(pod),
            });
            if let Some(node) = pod.pointer("/spec/nodeName") {
                endpoint["nodeName"] = node.clone();
            }
            endpoint
        })
        .collect();
    let ports = selected
        .first()
        .map(|p| ports_on(service, p))
        .unwrap_or_default();
    let existing: Vec<Value> = api
        .list(tenant, &SLICES, namespace)
        .await?
        .into_iter()
        .filter(|s| controlled_by(s, service))
        .collect();
    let mut slice = existing.first().cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "generateName": format!("{name}-"),
                "namespace": namespace,
                "labels": {SERVICE_NAME: name, MANAGED_BY: MANAGER},
                "ownerReferences": [pods::controller_reference(service)],
            },
        })
    });
    slice["addressType"] = json!("IPv4");
    slice["endpoints"] = json!(endpoints);
    slice["ports"] = json!(ports);
    if existing.is_empty() {
        api.create(tenant, &SLICES, namespace, slice).await?;
    } else if existing[0] != slice {
        api.replace(tenant, &SLICES, &slice, UpdateScope::Main)
            .await?;
    }
    Ok(())
}

/// Creates `object`, or replaces the current one unless `same` says nothing changed.
async fn put(
    api: &dyn Api,
    tenant: &str,
    resource: &Resource,
    object: Value,
    same: impl Fn(&Value, &Value) -> bool,
) -> Result<()> {
    let namespace = meta_str(&object, "namespace").map(str::to_owned);
    let name = meta_str(&object, "name").unwrap_or_default().to_owned();
    let namespace = namespace.as_deref();
    match api.get(tenant, resource, namespace, &name).await? {
        None => api
            .create(tenant, resource, namespace, object)
            .await
            .map(drop),
        Some(current) if same(&current, &object) => Ok(()),
        Some(current) => {
            let mut next = object;
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            api.replace(tenant, resource, &next, UpdateScope::Main)
                .await
                .map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: Value, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "dev", "uid": name, "labels": labels},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn services_select_pods_with_addresses() {
        let service = json!({"spec": {"selector": {"app": "web"}}});
        let pods = [
            pod("a", json!({"app": "web"}), "10.0.0.1", true),
            pod("b", json!({"app": "db"}), "10.0.0.2", true),
            pod("c", json!({"app": "web"}), "", true),
        ];
        let names: Vec<&str> = selected(&service, &pods)
            .expect("a selector")
            .iter()
            .filter_map(|p| meta_str(p, "name"))
            .collect();
        assert_eq!(names, ["a"]);
        assert!(
            selected(&json!({"spec": {}}), &pods).is_none(),
            "no selector: not ours"
        );
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let p = pod("a", json!({}), "10.0.0.1", true);
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "http"}), &p),
            Some(8080)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": 9090}), &p),
            Some(9090)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "nope"}), &p),
            None
        );
        let service = json!({"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}});
        assert_eq!(
            ports_on(&service, &p),
            vec![json!({"name": "web", "port": 8080, "protocol": "TCP"})]
        );
    }
}
