//! The garbage collector, after upstream's: when an owner goes, its dependents (objects
//! whose `ownerReferences` name its uid) go too (background propagation), or lose the
//! reference if other owners remain. An owner deleted with `propagationPolicy=Foreground`
//! carries the `foregroundDeletion` finalizer: its dependents are deleted first, and it
//! goes when none with `blockOwnerDeletion` is left. With `Orphan` it carries `orphan`: its
//! dependents lose the reference to it, then it goes. An object created with owner
//! references none of which exists is deleted (a dangling reference).
//!
//! The collector keeps the one index it needs, owner uid → dependents, for the objects
//! that have owner references (an idle tenant's defaults have none). It is built from each
//! tenant's objects at a resync and kept by the feed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use vcluster_core::object::UpdateScope;
use vcluster_core::object::{is_deleting, meta_str};
use vcluster_core::status::Reason;

use crate::pods::owner_references;
use crate::queue::{Queue, Reconcile};
use crate::{Api, Change, Requeue, Resource, Result};

pub(crate) const FOREGROUND: &str = "foregroundDeletion";
pub(crate) const ORPHAN: &str = "orphan";

/// An object, as the index and the work name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Object {
    resource: Resource,
    namespace: Option<String>,
    name: String,
    uid: String,
}

impl Object {
    fn of(resource: &Resource, object: &Value) -> Option<Self> {
        Some(Self {
            resource: resource.clone(),
            namespace: meta_str(object, "namespace").map(str::to_owned),
            name: meta_str(object, "name")?.to_owned(),
            uid: meta_str(object, "uid")?.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Work {
    /// The owner with this uid is gone: see to its dependents.
    OwnerGone(Arc<str>, String),
    /// An owner being deleted with a `foregroundDeletion` or `orphan` finalizer.
    Finalize(Arc<str>, Object),
    /// A new object with owner references: are its owners there?
    Dangling(Arc<str>, Object),
}

type Index = HashMap<(Arc<str>, String), HashSet<Object>>;

pub(crate) struct Collector {
    api: Arc<dyn Api>,
    index: Arc<Mutex<Index>>,
    queue: Queue<Work>,
}

impl Collector {
    pub(crate) fn start(api: Arc<dyn Api>, metrics: crate::metrics::QueueMetrics) -> Self {
        let index = Arc::new(Mutex::new(Index::new()));
        let work: Reconcile<Work> = {
            let (api, index) = (api.clone(), index.clone());
            Arc::new(move |work| {
                let (api, index) = (api.clone(), index.clone());
                Box::pin(async move { process(&*api, &index, work).await })
            })
        };
        Self {
            api,
            index,
            queue: Queue::start(crate::WORKERS, work, metrics),
        }
    }

    /// Keeps the index and queues what a change asks of the collector.
    pub(crate) fn watch(&self, change: &Change) {
        let tenant = &change.tenant;
        {
            let mut index = self.index.lock().expect("gc index");
            if let Some(previous) = &change.previous {
                unindex(&mut index, tenant, &change.resource, previous);
            }
            if let Some(object) = &change.object {
                self::index(&mut index, tenant, &change.resource, object);
            }
        }
        match (&change.object, &change.previous) {
            (None, Some(gone)) => {
                if let Some(uid) = meta_str(gone, "uid") {
                    self.queue
                        .add(Work::OwnerGone(tenant.clone(), uid.to_owned()));
                }
                // An owner may be waiting for this dependent to go.
                self.queue_waiting_owners(tenant, gone);
            }
            (Some(object), previous) => {
                if is_deleting(object) && (has(object, FOREGROUND) || has(object, ORPHAN)) {
                    if let Some(o) = Object::of(&change.resource, object) {
                        self.queue.add(Work::Finalize(tenant.clone(), o));
                    }
                } else if is_deleting(object) {
                    self.queue_waiting_owners(tenant, object);
                }
                if previous.is_none()
                    && owner_references(object).next().is_some()
                    && let Some(o) = Object::of(&change.resource, object)
                {
                    self.queue.add(Work::Dangling(tenant.clone(), o));
                }
            }
            (None, None) => {}
        }
    }

    fn queue_waiting_owners(&self, tenant: &Arc<str>, dependent: &Value) {
        let api = self.api.clone();
        let queue = self.queue.clone();
        let tenant = tenant.clone();
        let namespace = meta_str(dependent, "namespace").map(str::to_owned);
        let owners: Vec<Value> = owner_references(dependent).cloned().collect();
        if owners.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for owner in owners {
                let (Some(api_version), Some(kind)) =
                    (owner["apiVersion"].as_str(), owner["kind"].as_str())
                else {
                    continue;
                };
                let Some(resource) = api.resource_of(&tenant, api_version, kind).await else {
                    continue;
                };
                let namespace = namespace.clone().filter(|_| resource.namespaced);
                if let (Some(name), Some(uid)) = (owner["name"].as_str(), owner["uid"].as_str()) {
                    queue.add(Work::Finalize(
                        tenant.clone(),
                        Object {
                            resource,
                            namespace,
                            name: name.to_owned(),
                            uid: uid.to_owned(),
                        },
                    ));
                }
            }
        });
    }

    /// Rebuilds the index from every tenant's objects, then sees to what changed unseen.
    pub(crate) fn resync(&self) {
        let (api, index, queue) = (self.api.clone(), self.index.clone(), self.queue.clone());
        tokio::spawn(async move {
            let mut fresh = Index::new();
            let mut waiting = Vec::new();
            for tenant in api.tenants() {
                let objects = match api.everything(&tenant).await {
                    Ok(objects) => objects,
                    Err(e) => {
                        tracing::warn!(%tenant, error = %e.message, "garbage collector: cannot read the tenant");
                        continue;
                    }
                };
                for (resource, object) in &objects {
                    self::index(&mut fresh, &tenant, resource, object);
                    if is_deleting(object)
                        && (has(object, FOREGROUND) || has(object, ORPHAN))
                        && let Some(o) = Object::of(resource, object)
                    {
                        waiting.push(Work::Finalize(tenant.clone(), o));
                    }
                }
            }
            let owners: Vec<(Arc<str>, String)> = fresh.keys().cloned().collect();
            *index.lock().expect("gc index") = fresh;
            // Owners that went while nobody watched leave dependents behind.
            for (tenant, uid) in owners {
                queue.add(Work::OwnerGone(tenant, uid));
            }
            for work in waiting {
                queue.add(work);
            }
        });
    }
}

fn has(object: &Value, finalizer: &str) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

fn index(index: &mut Index, tenant: &Arc<str>, resource: &Resource, object: &Value) {
    let Some(me) = Object::of(resource, object) else {
        return;
    };
    for owner in owner_references(object) {
        if let Some(uid) = owner["uid"].as_str() {
            index
                .entry((tenant.clone(), uid.to_owned()))
                .or_default()
                .insert(me.clone());
        }
    }
}

fn unindex(index: &mut Index, tenant: &Arc<str>, resource: &Resource, object: &Value) {
    let Some(me) = Object::of(resource, object) else {
        return;
    };
    for owner in owner_references(object) {
        if let Some(uid) = owner["uid"].as_str() {
            let key = (tenant.clone(), uid.to_owned());
            if let Some(dependents) = index.get_mut(&key) {
                dependents.remove(&me);
                if dependents.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }
}

/// The dependents of `uid`, read fresh (the index may lag behind the store).
async fn dependents(
    api: &dyn Api,
    index: &Mutex<Index>,
    tenant: &Arc<str>,
    uid: &str,
) -> Result<Vec<(Object, Value)>> {
    let known: Vec<Object> = index
        .lock()
        .expect("gc index")
        .get(&(tenant.clone(), uid.to_owned()))
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default();
    let mut found = Vec::new();
    for dependent in known {
        let current = api
            .get(
                tenant,
                &dependent.resource,
                dependent.namespace.as_deref(),
                &dependent.name,
            )
            .await?;
        if let Some(current) = current.filter(|c| {
            meta_str(c, "uid") == Some(&dependent.uid)
                && owner_references(c).any(|r| r["uid"] == uid)
        }) {
            found.push((dependent, current));
        }
    }
    Ok(found)
}

/// Whether the owner `reference` names exists (with the uid it names).
async fn owner_exists(
    api: &dyn Api,
    tenant: &str,
    namespace: Option<&str>,
    reference: &Value,
) -> Result<bool> {
    let (Some(api_version), Some(kind), Some(name)) = (
        reference["apiVersion"].as_str(),
        reference["kind"].as_str(),
        reference["name"].as_str(),
    ) else {
        return Ok(false);
    };
    let Some(resource) = api.resource_of(tenant, api_version, kind).await else {
        return Ok(false);
    };
    let namespace = namespace.filter(|_| resource.namespaced);
    Ok(api
        .get(tenant, &resource, namespace, name)
        .await?
        .is_some_and(|owner| meta_str(&owner, "uid") == reference["uid"].as_str()))
}

async fn process(api: &dyn Api, index: &Mutex<Index>, work: Work) -> Result<Requeue> {
    match work {
        Work::OwnerGone(tenant, uid) => {
            for (dependent, current) in dependents(api, index, &tenant, &uid).await? {
                let others = owner_references(&current)
                    .filter(|r| r["uid"] != uid.as_str())
                    .count();
                if others > 0 {
                    drop_reference(api, &tenant, &dependent, current, &uid).await?;
                } else {
                    delete(api, &tenant, &dependent, "Background").await?;
                }
            }
            Ok(None)
        }
        Work::Finalize(tenant, owner) => finalize(api, index, &tenant, &owner).await,
        Work::Dangling(tenant, object) => {
            let Some(current) = api
                .get(
                    &tenant,
                    &object.resource,
                    object.namespace.as_deref(),
                    &object.name,
                )
                .await?
                .filter(|c| meta_str(c, "uid") == Some(&object.uid))
            else {
                return Ok(None);
            };
            for reference in owner_references(&current) {
                if owner_exists(api, &tenant, object.namespace.as_deref(), reference).await? {
                    return Ok(None);
                }
            }
            delete(api, &tenant, &object, "Background").await?;
            Ok(None)
        }
    }
}

/// An owner with a `foregroundDeletion` or `orphan` finalizer: see to its dependents, then
/// release it.
async fn finalize(
    api: &dyn Api,
    index: &Mutex<Index>,
    tenant: &Arc<str>,
    owner: &Object,
) -> Result<Requeue> {
    let Some(current) = api
        .get(
            tenant,
            &owner.resource,
            owner.namespace.as_deref(),
            &owner.name,
        )
        .await?
        .filter(|c| meta_str(c, "uid") == Some(&owner.uid) && is_deleting(c))
    else {
        return Ok(None);
    };
    let dependents = dependents(api, index, tenant, &owner.uid).await?;
    let finalizer = if has(&current, ORPHAN) {
        for (dependent, value) in dependents {
            drop_reference(api, tenant, &dependent, value, &owner.uid).await?;
        }
        ORPHAN
    } else if has(&current, FOREGROUND) {
        let mut blocking = false;
        for (dependent, value) in dependents {
            let blocks = owner_references(&value)
                .any(|r| r["uid"] == owner.uid.as_str() && r["blockOwnerDeletion"] == true);
            blocking |= blocks;
            if !is_deleting(&value) {
                delete(api, tenant, &dependent, "Foreground").await?;
            }
        }
        if blocking {
            // Each dependent's deletion queues this owner again.
            return Ok(None);
        }
        FOREGROUND
    } else {
        return Ok(None);
    };
    let mut next = current;
    if let Some(list) = next
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f != finalizer);
    }
    api.replace(tenant, &owner.resource, &next, UpdateScope::Main)
        .await?;
    Ok(None)
}

async fn drop_reference(
    api: &dyn Api,
    tenant: &str,
    dependent: &Object,
    mut current: Value,
    uid: &str,
) -> Result<()> {
    let metadata = &mut current["metadata"];
    let left: Vec<Value> = metadata["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != uid)
        .cloned()
        .collect();
    if let Some(meta) = metadata.as_object_mut() {
        // No owner left: no field, as upstream's (omitted when empty).
        if left.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(left));
        }
    }
    match api
        .replace(tenant, &dependent.resource, &current, UpdateScope::Main)
        .await
    {
        Err(e) if !e.is(Reason::NotFound) => Err(e),
        _ => Ok(()),
    }
}

async fn delete(api: &dyn Api, tenant: &str, object: &Object, propagation: &str) -> Result<()> {
    let (namespace, uid) = (object.namespace.as_deref(), Some(object.uid.as_str()));
    crate::delete_exact(
        api,
        tenant,
        &object.resource,
        namespace,
        &object.name,
        uid,
        propagation,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Fake};
    use serde_json::json;

    fn replicasets() -> Resource {
        Resource::builtin("apps", "replicasets")
    }

    fn pods() -> Resource {
        Resource::builtin("", "pods")
    }

    /// The ReplicaSet `name` with `uid`, marked for deletion with `finalizer` if one is
    /// given.
    fn rs(name: &str, uid: &str, finalizer: Option<&str>) -> (Resource, Value) {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "dev", "uid": uid}});
        let rs = match finalizer {
            Some(finalizer) => {
                let mut rs = fake::deleting(rs);
                rs["metadata"]["finalizers"] = json!([finalizer]);
                rs
            }
            None => rs,
        };
        (replicasets(), rs)
    }

    /// A pod owned by the ReplicaSets `owners` (name, uid, whether it blocks its owner's
    /// deletion).
    fn pod(name: &str, owners: &[(&str, &str, bool)]) -> (Resource, Value) {
        let references: Vec<Value> = owners
            .iter()
            .map(|(owner, uid, block)| {
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": owner, "uid": uid, "blockOwnerDeletion": block})
            })
            .collect();
        let pod = json!({"metadata": {"name": name, "namespace": "dev", "uid": format!("{name}-uid"),
            "ownerReferences": references}});
        (pods(), pod)
    }

    /// The ReplicaSet `web` marked for deletion with `finalizer`, and two pods of it: one
    /// that blocks its deletion and one that does not.
    fn deleting_owner(finalizer: &str) -> Arc<Fake> {
        Fake::with([
            rs("web", "rs-1", Some(finalizer)),
            pod("blocking", &[("web", "rs-1", true)]),
            pod("free", &[("web", "rs-1", false)]),
        ])
    }

    /// The work on the object of `resource` named `name`, as the fake holds it.
    fn object(api: &Fake, resource: &Resource, name: &str) -> Object {
        let held = api.object(resource, Some("dev"), name).expect("held");
        Object::of(resource, &held).expect("named, with a uid")
    }

    /// Does `work` with an index built from what the fake holds, as a resync builds it: the
    /// writes, sorted (the index keeps dependents in no order).
    async fn collect(api: &Fake, work: Work) -> Vec<String> {
        let tenant: Arc<str> = Arc::from(fake::TENANT);
        let mut built = Index::new();
        for (resource, object) in api.everything(fake::TENANT).await.expect("everything") {
            index(&mut built, &tenant, &resource, &object);
        }
        process(api, &Mutex::new(built), work)
            .await
            .expect("the work succeeds");
        let mut writes = api.take_writes();
        writes.sort();
        writes
    }

    fn owner_uids(api: &Fake, pod: &str) -> Vec<String> {
        let held = api.object(&pods(), Some("dev"), pod).expect("the pod");
        owner_references(&held)
            .filter_map(|r| r["uid"].as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn dependents_of_a_gone_owner_go_or_lose_the_reference() {
        let api = Fake::with([
            rs("kept", "rs-kept", None),
            pod("lone", &[("gone", "rs-gone", false)]),
            pod(
                "shared",
                &[("gone", "rs-gone", false), ("kept", "rs-kept", false)],
            ),
            pod("unrelated", &[("kept", "rs-kept", false)]),
        ]);
        let work = Work::OwnerGone(Arc::from(fake::TENANT), "rs-gone".into());
        assert_eq!(
            collect(&api, work).await,
            ["delete pods dev/lone", "update pods dev/shared"]
        );
        assert_eq!(owner_uids(&api, "shared"), ["rs-kept"]);
    }

    #[tokio::test]
    async fn objects_whose_owners_do_not_exist_are_deleted() {
        let api = Fake::with([
            rs("web", "rs-now", None),
            pod("owned", &[("web", "rs-now", false)]),
            pod("dangling", &[("absent", "rs-absent", false)]),
            // Its owner's name is there again, but as another object.
            pod("stale", &[("web", "rs-before", false)]),
        ]);
        let tenant: Arc<str> = Arc::from(fake::TENANT);
        let mut writes = Vec::new();
        for name in ["owned", "dangling", "stale"] {
            let work = Work::Dangling(tenant.clone(), object(&api, &pods(), name));
            writes.extend(collect(&api, work).await);
        }
        assert_eq!(
            writes,
            ["delete pods dev/dangling", "delete pods dev/stale"]
        );
    }

    #[tokio::test]
    async fn a_foreground_owner_goes_after_its_blocking_dependents() {
        let api = deleting_owner(FOREGROUND);
        let tenant: Arc<str> = Arc::from(fake::TENANT);
        let owner = object(&api, &replicasets(), "web");
        // The dependents are deleted in the foreground too; one blocks, so the owner waits.
        assert_eq!(
            collect(&api, Work::Finalize(tenant.clone(), owner.clone())).await,
            ["delete pods dev/blocking", "delete pods dev/free"]
        );
        assert!(api.object(&replicasets(), Some("dev"), "web").is_some());
        // Each dependent, having none of its own, is released; then so is the owner.
        for name in ["blocking", "free"] {
            let work = Work::Finalize(tenant.clone(), object(&api, &pods(), name));
            assert_eq!(
                collect(&api, work).await,
                [format!("update pods dev/{name}")]
            );
        }
        assert_eq!(
            collect(&api, Work::Finalize(tenant, owner)).await,
            ["update replicasets.apps dev/web"]
        );
        assert!(api.object(&replicasets(), Some("dev"), "web").is_none());
    }

    #[tokio::test]
    async fn an_orphaning_owner_lets_its_dependents_go_free_first() {
        let api = deleting_owner(ORPHAN);
        let owner = object(&api, &replicasets(), "web");
        assert_eq!(
            collect(&api, Work::Finalize(Arc::from(fake::TENANT), owner)).await,
            [
                "update pods dev/blocking",
                "update pods dev/free",
                "update replicasets.apps dev/web"
            ]
        );
        assert!(api.object(&replicasets(), Some("dev"), "web").is_none());
        assert!(owner_uids(&api, "blocking").is_empty() && owner_uids(&api, "free").is_empty());
    }

    #[test]
    fn the_index_follows_owner_references() {
        let tenant: Arc<str> = Arc::from("t");
        let pods = Resource::builtin("", "pods");
        let pod = |owners: Value| json!({"metadata": {"name": "p", "namespace": "dev", "uid": "p1", "ownerReferences": owners}});
        let mut idx = Index::new();
        index(
            &mut idx,
            &tenant,
            &pods,
            &pod(json!([{"uid": "rs1"}, {"uid": "rs2"}])),
        );
        assert_eq!(idx.len(), 2);
        unindex(
            &mut idx,
            &tenant,
            &pods,
            &pod(json!([{"uid": "rs1"}, {"uid": "rs2"}])),
        );
        index(&mut idx, &tenant, &pods, &pod(json!([{"uid": "rs2"}])));
        assert!(!idx.contains_key(&(tenant.clone(), "rs1".to_owned())));
        assert_eq!(idx[&(tenant, "rs2".to_owned())].len(), 1);
    }
}
