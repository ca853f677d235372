//! The namespace controller: a deleted namespace's content is deleted, then its
//! `kubernetes` finalizer is removed, so the namespace goes (upstream's namespace lifecycle).
//! Every live namespace has a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap
//! (the tenant's CA), created with it and again if deleted (upstream's service-account
//! controller and root-CA publisher).
//!
//! It reads the controllers' feed (one store watch over every tenant's keys, `controllers.rs`)
//! and acts on namespaces marked for deletion, so an idle tenant costs it nothing. At start,
//! and after the watch ends (a compaction, a store restart), every open tenant's namespaces
//! are swept for deletions it may have missed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_controllers::Change;
use vcluster_core::object::{self, UpdateScope};
use vcluster_core::registry;
use vcluster_store::RangeRequest;

use crate::resources::{self, Result, store_error};
use crate::router::Target;
use crate::tenant::{Tenant, Tenants, fresh};
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

/// Creates the namespace's default objects where missing. A namespace that is gone or
/// being deleted refuses them, which is as it should be.
async fn ensure_defaults(tenant: &Tenant, namespace: &str) -> Result<()> {
    for (plural, name) in DEFAULTS {
        let rt = registry::find("", "v1", plural).expect("built in");
        let body = match plural {
            "serviceaccounts" => json!({"metadata": {"name": name}}),
            _ => {
                json!({"metadata": {"name": name}, "data": {"ca.crt": tenant.identity.ca_cert_pem()}})
            }
        };
        let target = Target {
            rt,
            namespace: Some(namespace.to_owned()),
            name: None,
            subresource: None,
        };
        let params = [("fieldManager".to_owned(), "namespace-controller".to_owned())].into();
        match resources::create(tenant, &target, body, &params).await {
            Ok(_) => {}
            Err(e) if matches!(e.code, 403 | 404 | 409) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn spawn_defaults(tenant: &Arc<Tenant>, namespace: &str) {
    let (tenant, namespace) = (tenant.clone(), namespace.to_owned());
    tokio::spawn(async move {
        if let Err(e) = ensure_defaults(&tenant, &namespace).await {
            tracing::warn!(tenant = %tenant.name, %namespace, error = %e, "creating a namespace's default objects failed");
        }
    });
}

/// Acts on one change of the controllers' feed (`controllers.rs`).
pub(crate) fn watch(tenants: &Tenants, change: &Change) {
    let namespace_changed =
        change.resource.group.is_empty() && change.resource.plural == "namespaces";
    if !namespace_changed && !default_object_deleted(change) {
        return;
    }
    let Some(tenant) = tenants.get(&change.tenant) else {
        return;
    };
    match (&change.object, &change.namespace) {
        (Some(namespace), _) if namespace_changed => {
            if pending(namespace) {
                start(&tenant, &change.name);
            } else if change.previous.is_none() {
                spawn_defaults(&tenant, &change.name);
            }
        }
        (None, Some(namespace)) if !namespace_changed => spawn_defaults(&tenant, namespace),
        _ => {}
    }
}

/// Sweeps every open tenant's namespaces, for what the feed may have missed.
pub(crate) async fn sweep_all(tenants: &Tenants) {
    for tenant in tenants.open() {
        sweep_logged(&tenant).await;
    }
}

/// Sweeps a tenant just opened (in the background).
pub(crate) fn opened(tenant: &Arc<Tenant>) {
    let tenant = tenant.clone();
    tokio::spawn(async move { sweep_logged(&tenant).await });
}

async fn sweep_logged(tenant: &Arc<Tenant>) {
    if let Err(e) = sweep(tenant).await {
        tracing::warn!(tenant = %tenant.name, error = %e, "namespace sweep failed");
    }
}

/// Starts the deletion of every pending namespace of `tenant`, and makes the default
/// objects of the others.
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
        let Ok(namespace) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let name = object::meta_str(&namespace, "name").unwrap_or_default();
        if pending(&namespace) {
            start(tenant, name);
        } else {
            ensure_defaults(tenant, name).await?;
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
/// objects as usual), then removes the `kubernetes` finalizer. While content remains, the
/// namespace's status conditions say what and which finalizers hold it, as upstream's.
async fn finalize(tenant: &Arc<Tenant>, namespace: &str) -> Result<()> {
    let mut reported = None;
    loop {
        let types = crds::types(tenant).await?;
        let mut prefixes = HashSet::new();
        let (mut found, mut remaining) = (0, Remaining::default());
        for rt in types
            .all()
            .filter(|rt| rt.namespaced && !reviews::is_review(rt))
        {
            let prefix = registry::storage_prefix(rt, Some(namespace));
            // Versions of one resource share their objects: each prefix once.
            if prefixes.insert(prefix.clone()) {
                let swept = resources::delete_all(tenant, rt, &prefix).await?;
                found += swept.found;
                remaining.add(&format!("{}.{}", rt.plural, rt.group), &swept.held);
            }
        }
        if reported.as_ref() != Some(&remaining) {
            report(tenant, namespace, &remaining).await?;
            reported = Some(remaining.clone());
        }
        if found == 0 {
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

/// What a pass over a terminating namespace left: objects held by finalizers, per resource
/// (`plural.group`, as upstream names them) and per finalizer.
#[derive(Debug, Default, Clone, PartialEq)]
struct Remaining {
    resources: BTreeMap<String, usize>,
    finalizers: BTreeMap<String, usize>,
}

impl Remaining {
    fn add(&mut self, resource: &str, objects: &[Value]) {
        if objects.is_empty() {
            return;
        }
        *self.resources.entry(resource.to_owned()).or_default() += objects.len();
        for finalizer in objects.iter().flat_map(|o| {
            o.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
        }) {
            *self.finalizers.entry(finalizer.to_owned()).or_default() += 1;
        }
    }

    /// Upstream's five deletion conditions; a condition keeps its `lastTransitionTime` from
    /// `previous` while its status stays.
    fn conditions(&self, previous: Option<&Value>, now: &str) -> Value {
        let listed = |counts: &BTreeMap<String, usize>, how: &str| {
            counts
                .iter()
                .map(|(what, n)| format!("{what} {how} {n} resource instances"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let remaining = (!self.resources.is_empty()).then(|| {
            format!(
                "Some resources are remaining: {}",
                listed(&self.resources, "has")
            )
        });
        let finalizing = (!self.finalizers.is_empty()).then(|| {
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                listed(&self.finalizers, "in")
            )
        });
        let conditions = [
            (
                "NamespaceDeletionDiscoveryFailure",
                None,
                (
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                ),
                "",
            ),
            (
                "NamespaceDeletionGroupVersionParsingFailure",
                None,
                (
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                ),
                "",
            ),
            (
                "NamespaceDeletionContentFailure",
                None,
                (
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                ),
                "",
            ),
            (
                "NamespaceContentRemaining",
                remaining,
                ("ContentRemoved", "All content successfully removed"),
                "SomeResourcesRemain",
            ),
            (
                "NamespaceFinalizersRemaining",
                finalizing,
                (
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                ),
                "SomeFinalizersRemain",
            ),
        ];
        let before = |kind: &str| {
            previous
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == kind)
        };
        conditions
            .into_iter()
            .map(|(kind, problem, (ok_reason, ok_message), reason)| {
                let status = if problem.is_some() { "True" } else { "False" };
                let (reason, message) = match &problem {
                    Some(message) => (reason, message.as_str()),
                    None => (ok_reason, ok_message),
                };
                let since = before(kind)
                    .filter(|c| c["status"] == status)
                    .and_then(|c| c["lastTransitionTime"].as_str())
                    .unwrap_or(now);
                json!({"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
            })
            .collect()
    }
}

/// Writes what remains of a terminating namespace into its status conditions.
async fn report(tenant: &Tenant, namespace: &str, remaining: &Remaining) -> Result<()> {
    let target = Target {
        rt: registry::find("", "v1", "namespaces").expect("built in"),
        namespace: None,
        name: Some(namespace.to_owned()),
        subresource: Some("status".into()),
    };
    let now = fresh().now;
    let params = [("fieldManager".to_owned(), "namespace-controller".to_owned())].into();
    let written = resources::update(
        tenant,
        &target,
        UpdateScope::Status,
        &params,
        false,
        |current| {
            let mut next = current.clone();
            next["status"]["conditions"] =
                remaining.conditions(current.pointer("/status/conditions"), &now);
            Ok(next)
        },
    )
    .await;
    match written {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcluster_controllers::Resource;

    #[test]
    fn deleted_defaults_are_noticed() {
        let change = |plural: &str, name: &str, object: Option<Arc<Value>>| Change {
            tenant: Arc::from("a"),
            resource: Resource {
                group: String::new(),
                plural: plural.into(),
                namespaced: true,
            },
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

    #[test]
    fn deletion_conditions_say_what_remains_and_keep_their_times() {
        let mut remaining = Remaining::default();
        remaining.add(
            "pods.",
            &[
                json!({}),
                json!({"metadata": {"finalizers": ["example.com/hold"]}}),
            ],
        );
        remaining.add(
            "widgets.example.com",
            &[json!({"metadata": {"finalizers": ["example.com/hold"]}})],
        );
        remaining.add("configmaps.", &[]);
        let first = remaining.conditions(None, "T1");
        let find = |conditions: &Value, kind: &str| {
            conditions
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == kind))
                .cloned()
                .expect("the condition")
        };
        let content = find(&first, "NamespaceContentRemaining");
        assert_eq!(content["status"], "True");
        assert_eq!(content["reason"], "SomeResourcesRemain");
        assert_eq!(
            content["message"],
            "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
        );
        let finalizers = find(&first, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances"
        );
        assert_eq!(
            find(&first, "NamespaceDeletionContentFailure")["status"],
            "False"
        );

        let done = Remaining::default().conditions(Some(&first), "T2");
        let content = find(&done, "NamespaceContentRemaining");
        assert_eq!(
            (
                content["status"].as_str(),
                content["reason"].as_str(),
                content["lastTransitionTime"].as_str()
            ),
            (Some("False"), Some("ContentRemoved"), Some("T2"))
        );
        let discovery = find(&done, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(discovery["lastTransitionTime"], "T1");
    }
}
