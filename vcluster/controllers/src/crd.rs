//! The CRD finalizer (upstream's `crd-finalizer` of the apiextensions-apiserver): a
//! CustomResourceDefinition marked for deletion that still has the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer has its objects deleted (through
//! the API's own delete, so their own finalizers hold them as usual), then that finalizer
//! removed, so the CRD goes. While objects remain it looks again every half second.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::crd::CLEANUP_FINALIZER;
use vcluster_core::object::{self, Finalizers, UpdateScope};
use vcluster_core::status::Reason;

use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result};

pub(crate) static RESOURCE: LazyLock<Resource> = LazyLock::new(|| Resource {
    group: "apiextensions.k8s.io".into(),
    plural: "customresourcedefinitions".into(),
    namespaced: false,
});

/// How long a CRD whose objects are held by finalizers waits for the next pass.
const HELD: Duration = Duration::from_millis(500);

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE && change.object.as_deref().is_some_and(pending) {
        queue.add(Key {
            tenant: change.tenant.clone(),
            namespace: String::new(),
            name: change.name.clone(),
        });
    }
}

fn pending(crd: &Value) -> bool {
    object::is_deleting(crd) && object::has_finalizer(crd, Finalizers::Metadata, CLEANUP_FINALIZER)
}

/// The resource a CRD's objects are stored under.
fn resource_of(crd: &Value) -> Resource {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    Resource {
        group: s("/spec/group").to_owned(),
        plural: s("/spec/names/plural").to_owned(),
        namespaced: s("/spec/scope") == "Namespaced",
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let Some(crd) = api.get(tenant, &RESOURCE, None, &key.name).await? else {
        return Ok(None);
    };
    if !pending(&crd) {
        return Ok(None);
    }
    let resource = resource_of(&crd);
    let objects = match api.list(tenant, &resource, None).await {
        Ok(objects) => objects,
        // Never served (its names were not accepted): it can hold no objects.
        Err(e) if e.is(Reason::NotFound) => Vec::new(),
        Err(e) => return Err(e),
    };
    for o in &objects {
        let (namespace, name) = (
            object::meta_str(o, "namespace"),
            object::meta_str(o, "name"),
        );
        let deleted = api.delete(
            tenant,
            &resource,
            namespace,
            name.unwrap_or_default(),
            json!({}),
        );
        match deleted.await {
            Err(e) if !e.is(Reason::NotFound) => return Err(e),
            _ => {}
        }
    }
    if !objects.is_empty() {
        return Ok(Some(HELD));
    }
    let mut next = crd;
    object::remove_finalizer(&mut next, Finalizers::Metadata, CLEANUP_FINALIZER);
    api.replace(tenant, &RESOURCE, &next, UpdateScope::Main)
        .await?;
    Ok(None)
}
