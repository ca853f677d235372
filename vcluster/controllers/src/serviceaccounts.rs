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
    use crate::fake::{self, Case};
    use serde_json::Value;

    #[tokio::test]
    async fn every_live_namespace_gets_what_it_lacks() {
        let (accounts, configmaps) = (
            Resource::builtin("", "serviceaccounts"),
            Resource::builtin("", "configmaps"),
        );
        let default = json!({"metadata": {"name": "default", "namespace": "dev"}});
        let ca = json!({"metadata": {"name": "kube-root-ca.crt", "namespace": "dev"}, "data": {"ca.crt": "an older CA"}});
        let fakes = fake::table(
            reconcile,
            "",
            "dev",
            vec![
                Case {
                    name: "a new namespace gets both",
                    given: vec![(RESOURCE.clone(), fake::namespace("dev"))],
                    writes: vec![
                        "create serviceaccounts dev/default",
                        "create configmaps dev/kube-root-ca.crt",
                    ],
                },
                Case {
                    name: "what is there is not written again",
                    given: vec![
                        (RESOURCE.clone(), fake::namespace("dev")),
                        (accounts.clone(), default.clone()),
                        (configmaps.clone(), ca),
                    ],
                    writes: vec![],
                },
                Case {
                    name: "only what is missing is made",
                    given: vec![
                        (RESOURCE.clone(), fake::namespace("dev")),
                        (accounts.clone(), default),
                    ],
                    writes: vec!["create configmaps dev/kube-root-ca.crt"],
                },
                Case {
                    name: "a terminating namespace gets none",
                    given: vec![(RESOURCE.clone(), fake::deleting(fake::namespace("dev")))],
                    writes: vec![],
                },
                Case {
                    name: "a namespace gone gets none",
                    given: vec![],
                    writes: vec![],
                },
            ],
        )
        .await;
        let published = fakes[0]
            .object(&configmaps, Some("dev"), "kube-root-ca.crt")
            .expect("published");
        assert_eq!(published["data"]["ca.crt"], fake::CA);
        let account = fakes[0].object(&accounts, Some("dev"), "default");
        assert!(account.is_some_and(|a| a["metadata"]["namespace"] == "dev"));
    }

    #[tokio::test]
    async fn a_namespace_closing_meanwhile_is_no_error() {
        // The namespace was read live, but began terminating (403) or went (404) before
        // the creates: the API's namespace lifecycle refuses them, as it should.
        use vcluster_core::status::ApiError;
        let closing = [
            ApiError::new(403, Reason::Forbidden, "dev is being terminated"),
            ApiError::new(404, Reason::NotFound, "namespaces \"dev\" not found"),
        ];
        for refusal in closing {
            let api = fake::Fake::with([(RESOURCE.clone(), fake::namespace("dev"))]);
            for (plural, _) in DEFAULTS {
                api.refuse_creates(&Resource::builtin("", plural), refusal.clone());
            }
            let (requeue, writes) = api.reconcile(reconcile, "", "dev").await;
            assert_eq!(requeue, None);
            assert_eq!(writes.len(), DEFAULTS.len(), "{writes:?}");
        }
    }

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
