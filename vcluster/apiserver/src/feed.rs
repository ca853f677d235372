//! What the controllers (`vcluster-controllers`) see of the process: the *feed*, one store
//! watch over every tenant's keys whose changes are decoded once and handed to them (and
//! word of tenants opened while the process runs), and `Internal`, their [`Api`]: reads,
//! and writes through the API's own create, update and delete as the system (no RBAC
//! check; the same admission, defaulting and validation as a client's write). The
//! controllers themselves live in `vcluster-controllers`; nothing here reconciles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use vcluster_controllers::{Api, Change, Feed, LegacyToken, Recorder, Resource, Result};
use vcluster_core::object::UpdateScope;
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::{ApiError, Reason};
use vcluster_store::{EventKind, RangeRequest};

use crate::cache::CACHE_WAIT;
use crate::objects::{DeleteParams, Requester, WriteParams, now, served, store_error};
use crate::router::Target;
use crate::tenant::{Tenant, Tenants};
use crate::tokens::{Claims, KubernetesClaims, MAX_EXPIRATION, ObjectClaim};
use crate::write::{self, Deleted, Update};
use crate::{crds, reviews, stored};

/// The field manager of the controllers' writes.
const MANAGER: &str = "kube-controller-manager";

/// Runs the controllers and their feed until dropped.
pub(crate) async fn run(tenants: Arc<Tenants>) {
    let (sender, receiver) = mpsc::channel(4096);
    let seen = Arc::new(Seen::default());
    let (recorder, events) = Recorder::channel();
    let api: Arc<dyn Api> = Arc::new(Internal {
        tenants: tenants.clone(),
        seen: seen.clone(),
        recorder,
    });
    tokio::spawn(vcluster_controllers::write_events(api.clone(), events));
    let metrics = tenants.metrics().controllers.clone();
    tokio::spawn(vcluster_controllers::run_with_metrics(
        api, receiver, metrics,
    ));
    let mut opened = tenants.opened();
    let forward = sender.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let item = match opened.recv().await {
                Ok(tenant) => Feed::Opened(tenant),
                // More tenants opened at once than were told: look at all of them.
                Err(RecvError::Lagged(_)) => Feed::Resync,
                Err(RecvError::Closed) => return,
            };
            if forward.send(item).await.is_err() {
                return;
            }
        }
    });
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

/// A storage key inside a tenant → the resource, namespace and name it names.
fn parse_key(key: &str) -> Option<(Resource, Option<&str>, &str)> {
    let parts = registry::parse_storage_key(key)?;
    let resource = Resource {
        group: parts.group.to_owned(),
        plural: parts.plural.to_owned(),
        namespaced: parts.namespace.is_some(),
    };
    Some((resource, parts.namespace, parts.name))
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
    if sender.send(Feed::Resync).await.is_err() {
        return Ok(());
    }
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(store_error)?;
        let Some((tenant, key)) = vcluster_store::tenant_key(&event.kv.key) else {
            continue;
        };
        let Some((resource, namespace, name)) = parse_key(key) else {
            continue;
        };
        let decode = |kv: &vcluster_store::KeyValue| stored::readable(kv).map(Arc::new);
        let object = match event.kind {
            EventKind::Put => match decode(&event.kv) {
                Some(object) => Some(object),
                // Unreadable (and logged): no controller acts on it, as none can read it.
                None => continue,
            },
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
        if sender.send(Feed::Change(change)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

struct Internal {
    tenants: Arc<Tenants>,
    seen: Arc<Seen>,
    recorder: Recorder,
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
            .ok_or_else(|| ApiError::new(404, Reason::NotFound, format!("no tenant {name:?}")))
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
                    Reason::NotFound,
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

fn params() -> WriteParams {
    WriteParams::manager(MANAGER)
}

/// The objects under a storage prefix, read from the store (fresh, not from a cache).
async fn read_prefix(tenant: &Tenant, prefix: String) -> Result<Vec<(Bytes, Value)>> {
    let page = tenant
        .store
        .range(RangeRequest::prefix(prefix))
        .await
        .map_err(store_error)?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), stored::readable(kv)?)))
        .collect())
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

    async fn unreadable(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: &str,
    ) -> Result<Vec<String>> {
        let tenant = self.tenant(tenant)?;
        let target = self
            .target(&tenant, resource, Some(namespace), None, None)
            .await?;
        let prefix = registry::storage_prefix(&target.rt, target.namespace.as_deref());
        let page = tenant
            .store
            .range(RangeRequest::prefix(prefix.clone()))
            .await
            .map_err(store_error)?;
        Ok(page
            .kvs
            .iter()
            .filter(|kv| stored::decode(kv).is_err())
            .filter_map(|kv| {
                let key = std::str::from_utf8(&kv.key).ok()?;
                Some(key.strip_prefix(&prefix)?.to_owned())
            })
            .collect())
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
        let created = write::create(&tenant, Requester::System, &target, object, &params())
            .await?
            .object;
        self.wrote(&tenant, resource, &created);
        Ok(created)
    }

    async fn replace(
        &self,
        tenant: &str,
        resource: &Resource,
        object: &Value,
        scope: UpdateScope,
    ) -> Result<Value> {
        let tenant = self.tenant(tenant)?;
        let meta = |field| vcluster_core::object::meta_str(object, field);
        let mut target = self
            .target(
                &tenant,
                resource,
                meta("namespace"),
                meta("name"),
                Some(object),
            )
            .await?;
        target.subresource = match scope {
            UpdateScope::Main => None,
            UpdateScope::Status => Some("status".into()),
            UpdateScope::Finalize => Some("finalize".into()),
        };
        let how = Update {
            scope,
            conditional: true,
        };
        let change = |_: &Value| Ok(object.clone());
        let written = write::update(&tenant, Requester::System, &target, how, &params(), change)
            .await?
            .object;
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
    ) -> Result<Option<Value>> {
        let tenant = self.tenant(tenant)?;
        let target = self
            .target(&tenant, resource, namespace, Some(name), None)
            .await?;
        let options = DeleteParams::from_options(&options)?;
        let deleted = write::delete(&tenant, &target, &options).await?;
        self.seen.bump(&tenant.name, resource, deleted.revision());
        Ok(match deleted {
            Deleted::Held { object, .. } => Some(object),
            Deleted::Gone { .. } => None,
        })
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

    async fn resources(&self, tenant: &str) -> Result<Vec<Resource>> {
        let tenant = self.tenant(tenant)?;
        let types = crds::types(&tenant).await?;
        let mut resources: Vec<Resource> = Vec::new();
        // Reviews are questions, never stored; the versions of a resource share objects.
        for rt in types.all().filter(|rt| !reviews::is_review(rt)) {
            let resource = resource_of_type(rt);
            if !resources.contains(&resource) {
                resources.push(resource);
            }
        }
        Ok(resources)
    }

    fn root_ca(&self, tenant: &str) -> Result<String> {
        Ok(self.tenant(tenant)?.identity.ca_cert_pem().to_owned())
    }

    fn legacy_token(&self, tenant: &str, token: &LegacyToken) -> Result<String> {
        let tenant = self.tenant(tenant)?;
        let issuer = tenant.identity.tokens.issuer().to_owned();
        // The longest life a token may have: it lasts as long as its Secret.
        let claims = Claims::issued(
            issuer.clone(),
            vec![issuer],
            now(),
            MAX_EXPIRATION,
            KubernetesClaims {
                namespace: token.namespace.clone(),
                serviceaccount: ObjectClaim {
                    name: token.account.clone(),
                    uid: token.account_uid.clone(),
                },
                pod: None,
                secret: Some(ObjectClaim {
                    name: token.secret.clone(),
                    uid: token.secret_uid.clone(),
                }),
                node: None,
            },
        );
        Ok(tenant.identity.tokens.sign(&claims))
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_objects() {
        let (resource, namespace, name) = parse_key("/apps/deployments/dev/web").expect("key");
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
        assert!(parse_key("/core").is_none());
    }
}
