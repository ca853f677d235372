//! The ResourceQuota controller: each quota's `status.hard` (its spec's) and `status.used`
//! (what the namespace's objects use, counted by `vcluster_core::quota`), recounted when a
//! quota changes or an object it may count comes, goes or finishes. (Admission refuses what
//! would exceed a quota; this only reports.)

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value, json};
use vcluster_core::quota;
use vcluster_core::status::Reason;

use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result};

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("", "resourcequotas"));

pub(crate) fn watch(change: &Change, queue: &Queue) {
    let Some(namespace) = &change.namespace else {
        return;
    };
    let name = if change.resource == *RESOURCE {
        change.name.clone()
    } else {
        let phase =
            |o: &Option<Arc<Value>>| o.as_ref().map(|o| o.pointer("/status/phase").cloned());
        let counts = change.object.is_none()
            || change.previous.is_none()
            || phase(&change.object) != phase(&change.previous);
        if !counts {
            return;
        }
        // Every quota of the namespace: the empty name stands for all.
        String::new()
    };
    queue.add(Key {
        tenant: change.tenant.clone(),
        namespace: namespace.clone(),
        name,
    });
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let quotas = api.list(tenant, &RESOURCE, namespace).await?;
    let mut listed: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for q in quotas
        .iter()
        .filter(|q| key.name.is_empty() || q["metadata"]["name"] == key.name.as_str())
    {
        let hard = q
            .pointer("/spec/hard")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut used = Map::new();
        for resource in hard.as_object().into_iter().flatten().map(|(r, _)| r) {
            let Some((group, plural)) = quota::counted(resource) else {
                continue;
            };
            let objects = match listed.entry((group.to_owned(), plural.to_owned())) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let of = Resource::builtin(group, plural);
                    let found = match api.list(tenant, &of, namespace).await {
                        Ok(found) => found,
                        // A type the tenant does not serve counts nothing.
                        Err(e) if e.is(Reason::NotFound) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    e.insert(found)
                }
            };
            used.insert(
                resource.clone(),
                json!(quota::show(
                    resource,
                    quota::usage(resource, objects.iter())
                )),
            );
        }
        let status = json!({"hard": hard, "used": used});
        crate::write_status(&*api, tenant, &RESOURCE, q, status).await?;
    }
    Ok(None)
}
