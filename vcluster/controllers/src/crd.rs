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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Case, Fake};

    fn widgets() -> Resource {
        Resource::builtin("example.com", "widgets")
    }

    /// The CRD of widgets, being deleted, still to be cleaned up.
    fn deleting_crd() -> Value {
        fake::deleting(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com", "finalizers": [CLEANUP_FINALIZER]},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"}},
        }))
    }

    fn widget(namespace: &str, name: &str, finalizers: &[&str]) -> Value {
        json!({"metadata": {"name": name, "namespace": namespace, "finalizers": finalizers}})
    }

    #[tokio::test]
    async fn only_a_deleting_crd_with_the_cleanup_finalizer_is_cleaned_up() {
        let mut live = deleting_crd();
        live["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("deletionTimestamp");
        let mut held_by_another = deleting_crd();
        held_by_another["metadata"]["finalizers"] = json!(["example.com/other"]);
        fake::table(
            reconcile,
            "",
            "widgets.example.com",
            vec![
                Case {
                    name: "a live CRD keeps its finalizer",
                    given: vec![(RESOURCE.clone(), live)],
                    writes: vec![],
                },
                Case {
                    name: "a CRD without the cleanup finalizer is not this controller's",
                    given: vec![(RESOURCE.clone(), held_by_another)],
                    writes: vec![],
                },
                Case {
                    name: "a CRD gone is nothing to do",
                    given: vec![],
                    writes: vec![],
                },
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn objects_are_deleted_then_the_crd_released() {
        let api = Fake::with([(RESOURCE.clone(), deleting_crd())]);
        api.serve(&widgets(), "v1", "Widget");
        api.given(&widgets(), widget("dev", "a", &[]));
        api.given(&widgets(), widget("prod", "b", &["example.com/hold"]));

        // Every namespace's objects are deleted; one held by its finalizer stays, and so
        // does the CRD, looked at again.
        let (requeue, writes) = api.reconcile(reconcile, "", "widgets.example.com").await;
        assert_eq!(
            writes,
            [
                "delete widgets.example.com dev/a",
                "delete widgets.example.com prod/b"
            ]
        );
        assert_eq!(requeue, Some(HELD));
        let held = api.object(&widgets(), Some("prod"), "b").expect("held");
        assert!(object::is_deleting(&held));
        let crd = api.object(&RESOURCE, None, "widgets.example.com");
        assert!(crd.is_some_and(|c| pending(&c)), "the CRD waits");

        // Released by its own finalizer's owner, the last object goes; the next pass
        // finds none and lets the CRD go.
        api.release(&widgets(), Some("prod"), "b", "example.com/hold")
            .await;
        let (requeue, writes) = api.reconcile(reconcile, "", "widgets.example.com").await;
        assert_eq!(
            writes,
            ["update customresourcedefinitions.apiextensions.k8s.io widgets.example.com"]
        );
        assert_eq!(requeue, None);
        assert!(api.object(&RESOURCE, None, "widgets.example.com").is_none());
    }

    #[tokio::test]
    async fn a_crd_never_served_is_released_at_once() {
        // Its names were never accepted, so nothing serves its objects: the list is a 404,
        // which means there are none.
        let api = Fake::with([(RESOURCE.clone(), deleting_crd())]);
        let (requeue, writes) = api.reconcile(reconcile, "", "widgets.example.com").await;
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(requeue, None);
        assert!(api.object(&RESOURCE, None, "widgets.example.com").is_none());
    }
}
