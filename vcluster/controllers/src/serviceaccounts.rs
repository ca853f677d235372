//! What every namespace has, made with it and made again when deleted: the `default`
//! ServiceAccount (upstream's serviceaccounts-controller) and the `kube-root-ca.crt`
//! ConfigMap holding the tenant's CA (upstream's root-ca-cert-publisher). A namespace that
//! is gone or being deleted refuses them, which is as it should be.

use std::sync::{Arc, LazyLock};

use serde_json::json;
use vcluster_core::object;
use vcluster_core::status::Reason;

use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result, namespace};

/// The namespaces, which this controller reconciles (its sweep lists them).
pub(crate) static RESOURCE: LazyLock<Resource> = LazyLock::new(|| namespace::RESOURCE.clone());

/// The objects every namespace has: (resource, name).
const DEFAULTS: [(&str, &str); 2] = [
    ("serviceaccounts", "default"),
    ("configmaps", "kube-root-ca.crt"),
];

/// Whether `change` deleted one of a namespace's default objects.
fn default_object_deleted(change: &Change) -> bool {
    change.object.is_none()
        && change.resource.group.is_empty()
        && DEFAULTS
            .iter()
            .any(|(plural, name)| change.resource.plural == *plural && change.name == *name)
}

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE {
        if change.previous.is_none() && change.object.is_some() {
            queue.add(namespace::key(&change.tenant, &change.name));
        }
    } else if default_object_deleted(change)
        && let Some(ns) = &change.namespace
    {
        queue.add(namespace::key(&change.tenant, ns));
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let Some(ns) = api.get(tenant, &RESOURCE, None, &key.name).await? else {
        return Ok(None);
    };
    if object::is_deleting(&ns) {
        return Ok(None);
    }
    for (plural, name) in DEFAULTS {
        let resource = Resource::builtin("", plural);
        if api
            .get(tenant, &resource, Some(&key.name), name)
            .await?
            .is_some()
        {
            continue;
        }
        let body = match plural {
            "serviceaccounts" => json!({"metadata": {"name": name}}),
            _ => json!({"metadata": {"name": name}, "data": {"ca.crt": api.root_ca(tenant)?}}),
        };
        match api.create(tenant, &resource, Some(&key.name), body).await {
            Err(e)
                if !(e.is(Reason::Forbidden)
                    || e.is(Reason::NotFound)
                    || e.is(Reason::AlreadyExists)) =>
            {
                return Err(e);
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn deleted_defaults_are_noticed() {
        let change = |plural: &str, name: &str, object: Option<Arc<Value>>| Change {
            tenant: Arc::from("a"),
            resource: Resource::builtin("", plural),
            namespace: Some("dev".into()),
            name: name.into(),
            object,
            previous: None,
        };
        assert!(default_object_deleted(&change(
            "configmaps",
            "kube-root-ca.crt",
            None
        )));
        assert!(default_object_deleted(&change(
            "serviceaccounts",
            "default",
            None
        )));
        assert!(!default_object_deleted(&change(
            "serviceaccounts",
            "robot",
            None
        )));
        assert!(!default_object_deleted(&change(
            "serviceaccounts",
            "default",
            Some(Arc::new(json!({})))
        )));
    }
}
