//! The controllers' view of the process (`vcluster-controllers`): one store watch over
//! every tenant's keys feeds them (and the namespace controller) changes, and they read and
//! write through the API's own create, update and delete, as the system (no RBAC check,
//! the same admission, defaulting and validation as a client's write).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use vcluster_controllers::{Api, Change, Feed, Resource, Result};
use vcluster_core::object::UpdateScope;
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::ApiError;
use vcluster_store::{EventKind, RangeRequest};

use crate::resources::{self, served, store_error};
use crate::router::Target;
use crate::tenant::{Tenant, Tenants};
use crate::{accounts, crds, namespaces};

/// How long a list waits for a watch cache to catch up before it reads the store instead.
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// The field manager of the controllers' writes.
const MANAGER: &str = "kube-controller-manager";

/// Runs the controllers and their feed until dropped.
pub(crate) async fn run(tenants: Arc<Tenants>) {
    let (sender, receiver) = mpsc::channel(4096);
    let seen = Arc::new(Seen::default());
    let api: Arc<dyn Api> = Arc::new(Internal {
        tenants: tenants.clone(),
        seen: seen.clone(),
    });
    tokio::spawn(vcluster_controllers::run(api, receiver));
    loop {
        if let Err(e) = follow(&tenants, &sender, &seen).await {
            tracing::warn!(error = %e, "controller feed: the store watch ended; resyncing");
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A storage key inside a tenant (`/<group>/<plural>/[<namespace>/]<name>`) → the resource,
/// namespace and name it names.
fn parse_key(key: &str) -> Option<(Resource, Option<&str>, &str)> {
    let parts: Vec<&str> = key.strip_prefix('/')?.split('/').collect();
    let (group, plural, namespace, name) = match parts.as_slice() {
        [group, plural, name] => (*group, *plural, None, *name),
        [group, plural, namespace, name] => (*group, *plural, Some(*namespace), *name),
        _ => return None,
    };
    let resource = Resource {
        group: if group == "core" { "" } else { group }.to_owned(),
        plural: plural.to_owned(),
        namespaced: namespace.is_some(),
    };
    Some((resource, namespace, name))
}

/// A tenant's key (its prefix `/tenants/<tenant>/`, then a storage key, which starts with
/// `/` too) → (tenant, storage key).
fn tenant_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix("/tenants/")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash + 1..]))
}

/// The resources the controllers list most (every pod change re-reads its namespace's pods
/// for its controller): listed from the tenant's watch cache, not the store. Others are
/// read from the store, so that a tenant the controllers only glance at gets no cache.
const FROM_CACHE: [(&str, &str); 2] = [("", "pods"), ("apps", "replicasets")];

/// How far each watch cache the controllers list from must have got before a list is
/// answered from it: the revision of the last change of that tenant's resource that the
/// feed delivered or the controllers wrote. So a reconcile sees at least what queued it and
/// everything it wrote itself (upstream's controllers get the same from "expectations").
#[derive(Default)]
struct Seen(std::sync::Mutex<HashMap<Arc<str>, [u64; FROM_CACHE.len()]>>);

impl Seen {
    /// The place of `resource` in [`FROM_CACHE`], if the controllers list it from a cache.
    fn slot(resource: &Resource) -> Option<usize> {
        FROM_CACHE
            .iter()
            .position(|(g, p)| resource.group == *g && resource.plural == *p)
    }

    fn bump(&self, tenant: &str, resource: &Resource, revision: u64) {
        if let Some(slot) = Self::slot(resource) {
            let mut seen = self.0.lock().expect("seen lock");
            let at = match seen.get_mut(tenant) {
                Some(at) => at,
                None => seen.entry(Arc::from(tenant)).or_default(),
            };
            at[slot] = at[slot].max(revision);
        }
    }

    fn at(&self, tenant: &str, slot: usize) -> u64 {
        let seen = self.0.lock().expect("seen lock");
        seen.get(tenant).map_or(0, |at| at[slot])
    }
}

async fn follow(tenants: &Arc<Tenants>, sender: &mpsc::Sender<Feed>, seen: &Seen) -> Result<()> {
    let backend = tenants.backend();
    let revision = backend.current_revision().await.map_err(store_error)?;
    let mut events = backend
        .watch(b"/tenants/", revision)
        .await
        .map_err(store_error)?;
    namespaces::sweep_all(tenants).await;
    if sender.send(Feed::Resync).await.is_err() {
        return Ok(());
    }
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(store_error)?;
        let Some((tenant, key)) = tenant_key(&event.kv.key) else {
            continue;
        };
        let Some((resource, namespace, name)) = parse_key(key) else {
            continue;
        };
        let decode = |kv: &vcluster_store::KeyValue| served(kv).ok().map(Arc::new);
        let object = match event.kind {
            EventKind::Put => decode(&event.kv),
            EventKind::Delete => None,
        };
        let tenant = names
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::from(tenant))
            .clone();
        seen.bump(&tenant, &resource, event.revision());
        let change = Change {
            tenant,
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            object,
            previous: event.prev.as_ref().and_then(decode),
        };
        namespaces::watch(tenants, &change);
        accounts::watch(tenants, &change);
        if sender.send(Feed::Change(change)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

struct Internal {
    tenants: Arc<Tenants>,
    seen: Arc<Seen>,
}

impl Internal {
    /// Notes the revision of an object the controllers wrote.
    fn wrote(&self, tenant: &Tenant, resource: &Resource, object: &Value) {
        let revision = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse().ok());
        if let Some(revision) = revision {
            self.seen.bump(&tenant.name, resource, revision);
        }
    }

    fn tenant(&self, name: &str) -> Result<Arc<Tenant>> {
        self.tenants
            .get(name)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("no tenant {name:?}")))
    }

    /// The type that serves `resource` in the tenant (any of its versions: they share
    /// their objects).
    async fn target(
        &self,
        tenant: &Arc<Tenant>,
        resource: &Resource,
        namespace: Option<&str>,
        name: Option<&str>,
        object: Option<&Value>,
    ) -> Result<Target> {
        let types = crds::types(tenant).await?;
        let served = || {
            types
                .all()
                .filter(|rt| rt.group == resource.group && rt.plural == resource.plural)
        };
        // An object written goes through the version it is written in (the versions of a
        // resource share their objects; `autoscaling/v1` and `v2` have different fields).
        let written = object.and_then(|o| o["apiVersion"].as_str());
        let rt = served()
            .find(|rt| written.is_some_and(|v| rt.api_version() == v))
            .or_else(|| served().next())
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("the server does not serve {}", resource.plural),
                )
            })?;
        Ok(Target {
            namespace: namespace.filter(|_| rt.namespaced).map(str::to_owned),
            rt,
            name: name.map(str::to_owned),
            subresource: None,
        })
    }
}

fn params() -> HashMap<String, String> {
    HashMap::from([("fieldManager".to_owned(), MANAGER.to_owned())])
}

/// The objects under a storage prefix, read from the store (fresh, not from a cache).
async fn read_prefix(tenant: &Tenant, prefix: String) -> Result<Vec<(Bytes, Value)>> {
    let page = tenant
        .store
        .range(RangeRequest::prefix(prefix))
        .await
        .map_err(store_error)?;
    page.kvs
        .iter()
        .map(|kv| Ok((kv.key.clone(), served(kv)?)))
        .collect()
}

fn resource_of_type(rt: &ResourceType) -> Resource {
    Resource {
        group: rt.group.clone(),
        plural: rt.plural.clone(),
        namespaced: rt.namespaced,
    }
}

#[async_trait::async_trait]
impl Api for Internal {
    fn tenants(&self) -> Vec<Arc<str>> {
        self.tenants
            .open()
            .iter()
            .map(|t| Arc::from(t.name.as_str()))
            .collect()
    }

    async fn list(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>> {
        let name = tenant;
        let tenant = self.tenant(name)?;
        let target = self
            .target(&tenant, resource, namespace, None, None)
            .await?;
        let prefix = registry::storage_prefix(&target.rt, target.namespace.as_deref());
        if let Some(slot) = Seen::slot(resource) {
            let cache = tenant.cache(&target.rt, 0).await.map_err(store_error)?;
            match cache.wait_for(self.seen.at(name, slot), CACHE_WAIT).await {
                Ok(()) => {
                    let (objects, _) = cache.snapshot(prefix.as_bytes());
                    return Ok(objects
                        .into_iter()
                        .map(|(_, c)| (*c.object).clone())
                        .collect());
                }
                Err(reached) => {
                    tracing::warn!(tenant = name, resource = %resource.plural, reached, "controllers: the watch cache is behind; listing from the store");
                }
            }
        }
        let objects = read_prefix(&tenant, prefix).await?;
        Ok(objects.into_iter().map(|(_, o)| o).collect())
    }

    async fn get(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        let tenant = self.tenant(tenant)?;
        let target = self
            .target(&tenant, resource, namespace, Some(name), None)
            .await?;
        let key = registry::storage_key(&target.rt, target.namespace.as_deref(), name);
        match tenant
            .store
            .get(key.as_bytes())
            .await
            .map_err(store_error)?
        {
            Some(kv) => Ok(Some(served(&kv)?)),
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value> {
        let tenant = self.tenant(tenant)?;
        let target = self
            .target(&tenant, resource, namespace, None, Some(&object))
            .await?;
        let created = resources::create(&tenant, &target, object, &params()).await?;
        self.wrote(&tenant, resource, &created);
        Ok(created)
    }

    async fn replace(
        &self,
        tenant: &str,
        resource: &Resource,
        object: &Value,
        status: bool,
    ) -> Result<Value> {
        let tenant = self.tenant(tenant)?;
        let meta = |field| vcluster_core::object::meta_str(object, field);
        let target = self
            .target(
                &tenant,
                resource,
                meta("namespace"),
                meta("name"),
                Some(object),
            )
            .await?;
        let scope = if status {
            UpdateScope::Status
        } else {
            UpdateScope::Main
        };
        let written = resources::update(&tenant, &target, scope, &params(), true, |_| {
            Ok(object.clone())
        })
        .await?;
        self.wrote(&tenant, resource, &written);
        Ok(written)
    }

    async fn delete(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: Value,
    ) -> Result<()> {
        let tenant = self.tenant(tenant)?;
        let target = self
            .target(&tenant, resource, namespace, Some(name), None)
            .await?;
        let (_, revision) = resources::delete_at(&tenant, &target, &options).await?;
        self.seen.bump(&tenant.name, resource, revision);
        Ok(())
    }

    async fn everything(&self, tenant: &str) -> Result<Vec<(Resource, Value)>> {
        let tenant = self.tenant(tenant)?;
        let objects = read_prefix(&tenant, "/".to_owned()).await?;
        Ok(objects
            .into_iter()
            .filter_map(|(key, object)| {
                let (resource, _, _) = parse_key(std::str::from_utf8(&key).ok()?)?;
                Some((resource, object))
            })
            .collect())
    }

    async fn resource_of(&self, tenant: &str, api_version: &str, kind: &str) -> Option<Resource> {
        let tenant = self.tenant(tenant).ok()?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let types = crds::types(&tenant).await.ok()?;
        types
            .all()
            .find(|rt| rt.group == group && rt.version == version && rt.kind == kind)
            .map(|rt| resource_of_type(rt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_objects() {
        let full = format!(
            "{}{}",
            String::from_utf8_lossy(&vcluster_store::tenant_prefix("a").expect("prefix")),
            "/apps/deployments/dev/web"
        );
        let (tenant, key) = tenant_key(full.as_bytes()).expect("tenant key");
        assert_eq!((tenant, key), ("a", "/apps/deployments/dev/web"));
        let (resource, namespace, name) = parse_key(key).expect("object key");
        assert_eq!(
            resource,
            Resource {
                group: "apps".into(),
                plural: "deployments".into(),
                namespaced: true
            }
        );
        assert_eq!((namespace, name), (Some("dev"), "web"));
        let (resource, namespace, name) = parse_key("/core/namespaces/dev").expect("cluster key");
        assert_eq!(
            (
                resource.group.as_str(),
                resource.namespaced,
                namespace,
                name
            ),
            ("", false, None, "dev")
        );
        assert_eq!(tenant_key(b"/vcluster/identities/a"), None);
        assert!(parse_key("/core").is_none());
    }
}
