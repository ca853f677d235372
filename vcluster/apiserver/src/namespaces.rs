//! The namespace controller: a deleted namespace's content is deleted, then its
//! `kubernetes` finalizer is removed, so the namespace goes (upstream's namespace lifecycle).
//! Every live namespace has a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap
//! (the tenant's CA), created with it and again if deleted (upstream's service-account
//! controller and root-CA publisher).
//!
//! One store watch serves every tenant of the process: it follows all tenants' keys and acts
//! on namespaces marked for deletion, so an idle tenant costs it nothing. At start, and after
//! the watch ends (a compaction, a store restart), every open tenant's namespaces are swept
//! for deletions it may have missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use vcluster_core::object::{self, UpdateScope};
use vcluster_core::registry;
use vcluster_store::{EventKind, RangeRequest};

use crate::resources::{self, Result, store_error};
use crate::router::Target;
use crate::tenant::{Tenant, Tenants};
use crate::{crds, reviews};

/// The finalizer the namespace controller owns.
pub(crate) const FINALIZER: &str = "kubernetes";

/// Whether a namespace waits for this controller.
fn pending(namespace: &Value) -> bool {
    object::is_deleting(namespace)
        && namespace
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// A tenant's key (its prefix `/tenants/<tenant>/`, then a storage key) → (tenant,
/// storage key).
fn tenant_key(key: &[u8]) -> Option<(&str, &str)> {
    let key = std::str::from_utf8(key).ok()?;
    key.strip_prefix("/tenants/")?.split_once('/')
}

/// The name of the namespace a storage key (`/core/namespaces/<name>`) names.
fn namespace_of(storage_key: &str) -> Option<&str> {
    let name = storage_key.strip_prefix("/core/namespaces/")?;
    (!name.contains('/')).then_some(name)
}

/// The objects every namespace has: (resource, name).
const DEFAULTS: [(&str, &str); 2] = [
    ("serviceaccounts", "default"),
    ("configmaps", "kube-root-ca.crt"),
];

/// The namespace whose default object a storage key names, if it names one.
fn default_object_namespace(storage_key: &str) -> Option<&str> {
    DEFAULTS.iter().find_map(|(plural, name)| {
        let rest = storage_key.strip_prefix(&format!("/core/{plural}/"))?;
        let (namespace, object) = rest.split_once('/')?;
        (object == *name).then_some(namespace)
    })
}

/// Creates the namespace's default objects where missing. A namespace that is gone or
/// being deleted refuses them, which is as it should be.
async fn ensure_defaults(tenant: &Tenant, namespace: &str) -> Result<()> {
    for (plural, name) in DEFAULTS {
        let rt = registry::find("", "v1", plural).expect("built in");
        let body = match plural {
            "serviceaccounts" => json!({"metadata": {"name": name}}),
            _ => {
                json!({"metadata": {"name": name}, "data": {"ca.crt": tenant.identity.ca_cert_pem()}})
            }
        };
        let target = Target {
            rt,
            namespace: Some(namespace.to_owned()),
            name: None,
            subresource: None,
        };
        let params = [("fieldManager".to_owned(), "namespace-controller".to_owned())].into();
        match resources::create(tenant, &target, body, &params).await {
            Ok(_) => {}
            Err(e) if matches!(e.code, 403 | 404 | 409) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn spawn_defaults(tenant: &Arc<Tenant>, namespace: &str) {
    let (tenant, namespace) = (tenant.clone(), namespace.to_owned());
    tokio::spawn(async move {
        if let Err(e) = ensure_defaults(&tenant, &namespace).await {
            tracing::warn!(tenant = %tenant.name, %namespace, error = %e, "creating a namespace's default objects failed");
        }
    });
}

/// Runs until dropped.
pub(crate) async fn run(tenants: Arc<Tenants>) {
    loop {
        if let Err(e) = follow(&tenants).await {
            tracing::warn!(error = %e, "namespace controller: watch ended; sweeping again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(tenants: &Arc<Tenants>) -> Result<()> {
    let backend = tenants.backend();
    let revision = backend.current_revision().await.map_err(store_error)?;
    for tenant in tenants.open() {
        sweep(&tenant).await?;
    }
    let mut events = backend
        .watch(b"/tenants/", revision)
        .await
        .map_err(store_error)?;
    while let Some(event) = events.next().await {
        let event = event.map_err(store_error)?;
        let Some((tenant, key)) = tenant_key(&event.kv.key) else {
            continue;
        };
        match (event.kind, namespace_of(key), default_object_namespace(key)) {
            (EventKind::Put, Some(name), _) => {
                let Some(tenant) = tenants.get(tenant) else {
                    continue;
                };
                let namespace = serde_json::from_slice::<Value>(&event.kv.value);
                if namespace.as_ref().is_ok_and(pending) {
                    start(&tenant, name);
                } else if event.prev.is_none() {
                    spawn_defaults(&tenant, name);
                }
            }
            (EventKind::Delete, None, Some(namespace)) => {
                if let Some(tenant) = tenants.get(tenant) {
                    spawn_defaults(&tenant, namespace);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Starts the deletion of every pending namespace of `tenant`.
async fn sweep(tenant: &Arc<Tenant>) -> Result<()> {
    let namespaces = registry::find("", "v1", "namespaces").expect("built in");
    let page = tenant
        .store
        .range(RangeRequest::prefix(registry::storage_prefix(
            &namespaces,
            None,
        )))
        .await
        .map_err(store_error)?;
    for kv in page.kvs {
        let Ok(namespace) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let name = object::meta_str(&namespace, "name").unwrap_or_default();
        if pending(&namespace) {
            start(tenant, name);
        } else {
            ensure_defaults(tenant, name).await?;
        }
    }
    Ok(())
}

fn start(tenant: &Arc<Tenant>, name: &str) {
    let job = format!("namespace/{name}");
    if !tenant.start_cleanup(&job) {
        return;
    }
    let (tenant, name) = (tenant.clone(), name.to_owned());
    tokio::spawn(async move {
        if let Err(e) = finalize(&tenant, &name).await {
            tracing::warn!(tenant = %tenant.name, namespace = %name, error = %e, "namespace deletion failed; retried on the next sweep");
        }
        tenant.end_cleanup(&job);
    });
}

/// Deletes everything in the namespace (through the API's delete, so finalizers hold
/// objects as usual), then removes the `kubernetes` finalizer.
async fn finalize(tenant: &Arc<Tenant>, namespace: &str) -> Result<()> {
    loop {
        let types = crds::types(tenant).await?;
        let mut prefixes = HashSet::new();
        let mut remaining = 0;
        for rt in types
            .all()
            .filter(|rt| rt.namespaced && !reviews::is_review(rt))
        {
            let prefix = registry::storage_prefix(rt, Some(namespace));
            // Versions of one resource share their objects: each prefix once.
            if prefixes.insert(prefix.clone()) {
                remaining += resources::delete_all(tenant, rt, &prefix).await?;
            }
        }
        if remaining == 0 {
            break;
        }
        // Objects held by finalizers of their own: wait for them.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let target = Target {
        rt: registry::find("", "v1", "namespaces").expect("built in"),
        namespace: None,
        name: Some(namespace.to_owned()),
        subresource: Some("finalize".into()),
    };
    resources::release(
        tenant,
        &target,
        UpdateScope::Finalize,
        "/spec/finalizers",
        FINALIZER,
        "namespace-controller",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_the_controller_acts_on() {
        let scoped = format!(
            "{}{}",
            String::from_utf8_lossy(&vcluster_store::tenant_prefix("a").expect("prefix")),
            registry::storage_key(
                &registry::find("", "v1", "namespaces").expect("ns"),
                None,
                "dev"
            )
        );
        let (tenant, key) = tenant_key(scoped.as_bytes()).expect("a tenant's key");
        assert_eq!((tenant, namespace_of(key)), ("a", Some("dev")), "{scoped}");
        assert_eq!(namespace_of("/core/configmaps/dev/x"), None);
        assert_eq!(namespace_of("/core/namespaces/dev/x"), None);
        assert_eq!(tenant_key(b"/vcluster/identities/a"), None);
        assert_eq!(
            default_object_namespace("/core/configmaps/dev/kube-root-ca.crt"),
            Some("dev")
        );
        assert_eq!(
            default_object_namespace("/core/serviceaccounts/dev/default"),
            Some("dev")
        );
        assert_eq!(
            default_object_namespace("/core/serviceaccounts/dev/robot"),
            None
        );
    }
}
