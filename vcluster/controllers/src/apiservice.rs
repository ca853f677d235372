//! The APIService availability controller (kube-aggregator's): every APIService's
//! `Available` condition, as upstream sets it. A local one (no `spec.service`: served by
//! this API server) is always available; one backed by a Service is not while the Service
//! is missing (`ServiceNotFound`) or has no endpoint addresses (`MissingEndpoints`), and
//! otherwise fails its discovery check, because proxying to aggregated API servers is not
//! built yet (it comes with the syncer; the message says so). Service-backed ones are
//! looked at again every 30 s, as upstream's controller resyncs.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result, pods};

pub(crate) static RESOURCE: LazyLock<Resource> = LazyLock::new(|| Resource {
    group: "apiregistration.k8s.io".into(),
    plural: "apiservices".into(),
    namespaced: false,
});

/// How often a Service-backed APIService is checked again.
const RESYNC: Duration = Duration::from_secs(30);

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE && change.object.is_some() {
        queue.add(Key {
            tenant: change.tenant.clone(),
            namespace: String::new(),
            name: change.name.clone(),
        });
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let Some(service) = api.get(tenant, &RESOURCE, None, &key.name).await? else {
        return Ok(None);
    };
    let (available, reason, message, again) = match service.pointer("/spec/service") {
        Some(backend) if backend.is_object() => {
            let (available, reason, message) =
                check_backend(&*api, tenant, &service, backend).await?;
            (available, reason, message, Some(RESYNC))
        }
        _ => (
            "True",
            "Local",
            "Local APIServices are always available".to_owned(),
            None,
        ),
    };
    let mut conditions = service
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let set = |c: &mut Vec<Value>| {
        pods::set_condition(
            c,
            "Available",
            available,
            reason,
            &message,
            pods::now(),
            false,
        );
    };
    set(&mut conditions);
    crate::write_status(
        &*api,
        tenant,
        &RESOURCE,
        &service,
        json!({"conditions": conditions}),
    )
    .await?;
    Ok(again)
}

/// The availability of an APIService served by `backend` (`{namespace, name, port}`).
async fn check_backend(
    api: &dyn Api,
    tenant: &str,
    service: &Value,
    backend: &Value,
) -> Result<(&'static str, &'static str, String)> {
    let namespace = backend["namespace"].as_str().unwrap_or_default();
    let name = backend["name"].as_str().unwrap_or_default();
    let port = backend["port"].as_i64().unwrap_or(443);
    let services = Resource::builtin("", "services");
    let Some(svc) = api.get(tenant, &services, Some(namespace), name).await? else {
        let message = format!("service/{name} in {namespace:?} is not present");
        return Ok(("False", "ServiceNotFound", message));
    };
    let port_name = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ports| ports.iter().find(|p| p["port"].as_i64() == Some(port)))
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned());
    let Some(port_name) = port_name else {
        let message = format!("service/{name} in {namespace:?} is not listening on port {port}");
        return Ok(("False", "ServicePortError", message));
    };
    let endpoints = Resource::builtin("", "endpoints");
    let addresses = api
        .get(tenant, &endpoints, Some(namespace), name)
        .await?
        .and_then(|e| e["subsets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|subset| {
            let target = subset["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"].as_str().unwrap_or_default() == port_name)?["port"]
                .as_i64()?;
            let ips: Vec<String> = subset["addresses"]
                .as_array()?
                .iter()
                .filter_map(|a| a["ip"].as_str().map(|ip| format!("{ip}:{target}")))
                .collect();
            Some(ips)
        })
        .flatten()
        .collect::<Vec<_>>();
    let Some(address) = addresses.first() else {
        let message = format!(
            "endpoints for service/{name} in {namespace:?} have no addresses with port name {port_name:?}"
        );
        return Ok(("False", "MissingEndpoints", message));
    };
    let text = |p: &str| {
        service
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let message = format!(
        "failing or missing response from https://{address}/apis/{}/{}: proxying to aggregated API servers is not implemented yet",
        text("/spec/group"),
        text("/spec/version")
    );
    Ok(("False", "FailedDiscoveryCheck", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;

    fn apiservice(spec: Value) -> (Resource, Value) {
        (
            RESOURCE.clone(),
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": spec}),
        )
    }

    async fn available(api: &Arc<Fake>) -> (String, String, String) {
        let _ = api.reconcile(reconcile, "", "v1beta1.metrics.k8s.io").await;
        let found = api
            .object(&RESOURCE, None, "v1beta1.metrics.k8s.io")
            .expect("the APIService");
        let c = &found["status"]["conditions"][0];
        assert_eq!(c["type"], "Available");
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        (text("status"), text("reason"), text("message"))
    }

    #[tokio::test]
    async fn availability_is_said_as_the_aggregator_says_it() {
        let local = Fake::with([apiservice(
            json!({"group": "metrics.k8s.io", "version": "v1beta1"}),
        )]);
        assert_eq!(
            available(&local).await,
            (
                "True".into(),
                "Local".into(),
                "Local APIServices are always available".into()
            )
        );
        let backed = json!({"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}});
        let missing = Fake::with([apiservice(backed.clone())]);
        assert_eq!(available(&missing).await.1, "ServiceNotFound",);
        let svc = (
            Resource::builtin("", "services"),
            json!({"metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "spec": {"ports": [{"name": "https", "port": 443}]}}),
        );
        let no_endpoints = Fake::with([apiservice(backed.clone()), svc.clone()]);
        let (status, reason, message) = available(&no_endpoints).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "MissingEndpoints")
        );
        assert_eq!(
            message,
            r#"endpoints for service/metrics-server in "kube-system" have no addresses with port name "https""#
        );
        let endpoints = (
            Resource::builtin("", "endpoints"),
            json!({"metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "subsets": [{"addresses": [{"ip": "10.244.0.9"}], "ports": [{"name": "https", "port": 4443}]}]}),
        );
        let served = Fake::with([apiservice(backed), svc, endpoints]);
        let (status, reason, message) = available(&served).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedDiscoveryCheck")
        );
        assert!(
            message.contains("https://10.244.0.9:4443/apis/metrics.k8s.io/v1beta1"),
            "{message}"
        );
    }
}
