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
    use serde_json::json;

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
