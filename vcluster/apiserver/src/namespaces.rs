//! The namespace controller: a deleted namespace's content is deleted, then its
//! `kubernetes` finalizer is removed, so the namespace goes (upstream's namespace lifecycle).
//!
//! One store watch serves every tenant of the process: it follows all tenants' keys and acts
//! on namespaces marked for deletion, so an idle tenant costs it nothing. At start, and after
//! the watch ends (a compaction, a store restart), every open tenant's namespaces are swept
//! for deletions it may have missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
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

/// A tenant's key of a namespace (its prefix `/tenants/<tenant>/`, then the storage key
/// `/core/namespaces/<name>`) → (tenant, name).
fn namespace_key(key: &[u8]) -> Option<(&str, &str)> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix("/tenants/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("/core/namespaces/")?;
    (!name.contains('/')).then_some((tenant, name))
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
        if event.kind != EventKind::Put {
            continue;
        }
        let Some((tenant, name)) = namespace_key(&event.kv.key) else {
            continue;
        };
        let deleting = serde_json::from_slice::<Value>(&event.kv.value)
            .is_ok_and(|namespace| pending(&namespace));
        if let (true, Some(tenant)) = (deleting, tenants.get(tenant)) {
            start(&tenant, name);
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
        if let Ok(namespace) = serde_json::from_slice::<Value>(&kv.value)
            && pending(&namespace)
        {
            let name = object::meta_str(&namespace, "name").unwrap_or_default();
            start(tenant, name);
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
    fn only_namespace_keys_are_namespaces() {
        let scoped = format!(
            "{}{}",
            String::from_utf8_lossy(&vcluster_store::tenant_prefix("a").expect("prefix")),
            registry::storage_key(
                &registry::find("", "v1", "namespaces").expect("ns"),
                None,
                "dev"
            )
        );
        assert_eq!(
            namespace_key(scoped.as_bytes()),
            Some(("a", "dev")),
            "{scoped}"
        );
        assert_eq!(
            namespace_key(b"/tenants/a//core/namespaces/dev"),
            Some(("a", "dev"))
        );
        assert_eq!(namespace_key(b"/tenants/a//core/configmaps/dev/x"), None);
        assert_eq!(namespace_key(b"/tenants/a//core/namespaces/dev/x"), None);
        assert_eq!(namespace_key(b"/vcluster/identities/a"), None);
    }
}
