//! The namespace controller: a namespace marked for deletion that still has the
//! `kubernetes` finalizer in `spec.finalizers` has its content deleted (every namespaced
//! resource the tenant serves, custom ones too, through the API's own delete, so the
//! objects' finalizers hold them as usual), then that finalizer removed, so the namespace
//! goes. While content held by finalizers remains, the namespace's status carries
//! upstream's five deletion conditions (`NamespaceContentRemaining`, ...), in upstream's
//! words, and the namespace is looked at again every half second.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::object::{self, Finalizers, UpdateScope};

use crate::queue::{Key, Queue};
use crate::{Api, Change, Requeue, Resource, Result, pods};

pub(crate) static RESOURCE: LazyLock<Resource> = LazyLock::new(|| Resource {
    group: String::new(),
    plural: "namespaces".into(),
    namespaced: false,
});

/// The finalizer this controller owns.
pub(crate) const FINALIZER: &str = "kubernetes";

/// How long a namespace whose content is held by finalizers waits for the next pass.
const HELD: Duration = Duration::from_millis(500);

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource != *RESOURCE {
        return;
    }
    if change.object.as_deref().is_some_and(pending) {
        queue.add(key(&change.tenant, &change.name));
    }
}

pub(crate) fn key(tenant: &Arc<str>, namespace: &str) -> Key {
    Key {
        tenant: tenant.clone(),
        namespace: String::new(),
        name: namespace.to_owned(),
    }
}

/// Whether a namespace waits for this controller.
fn pending(namespace: &Value) -> bool {
    object::is_deleting(namespace) && object::has_finalizer(namespace, Finalizers::Spec, FINALIZER)
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let Some(namespace) = api.get(tenant, &RESOURCE, None, &key.name).await? else {
        return Ok(None);
    };
    if !pending(&namespace) {
        return Ok(None);
    }
    let (found, remaining) = delete_content(&*api, tenant, &key.name).await?;
    let now = pods::stamp(pods::now());
    let conditions = remaining.conditions(namespace.pointer("/status/conditions"), &now);
    let namespace = if namespace["status"]["conditions"] == conditions {
        namespace
    } else {
        let mut next = namespace;
        next["status"]["conditions"] = conditions;
        api.replace(tenant, &RESOURCE, &next, UpdateScope::Status)
            .await?
    };
    if found > 0 {
        // Objects held by finalizers of their own (or created meanwhile): look again.
        return Ok(Some(HELD));
    }
    let mut next = namespace;
    object::remove_finalizer(&mut next, Finalizers::Spec, FINALIZER);
    api.replace(tenant, &RESOURCE, &next, UpdateScope::Finalize)
        .await?;
    Ok(None)
}

/// One pass over the namespace's content: how many objects there were, and what is still
/// there after their delete.
async fn delete_content(
    api: &dyn Api,
    tenant: &str,
    namespace: &str,
) -> Result<(usize, Remaining)> {
    let (mut found, mut remaining) = (0, Remaining::default());
    let mut seen = HashSet::new();
    for resource in api.resources(tenant).await? {
        if !resource.namespaced || !seen.insert(resource.clone()) {
            continue;
        }
        let objects = api.list(tenant, &resource, Some(namespace)).await?;
        // Objects that cannot be read go too (by name: their finalizers are unknowable).
        let unreadable = api.unreadable(tenant, &resource, namespace).await?;
        found += objects.len() + unreadable.len();
        let names = objects
            .iter()
            .map(|o| object::meta_str(o, "name").unwrap_or_default())
            .chain(unreadable.iter().map(String::as_str));
        let mut held = Vec::new();
        for name in names {
            let deleted = api.delete(tenant, &resource, Some(namespace), name, json!({}));
            match deleted.await {
                Ok(Some(still)) => held.push(still),
                Ok(None) => {}
                Err(e) if e.is(vcluster_core::status::Reason::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        remaining.add(&format!("{}.{}", resource.plural, resource.group), &held);
    }
    Ok((found, remaining))
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
            o.pointer(Finalizers::Metadata.pointer())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Case, Fake};

    fn configmaps() -> Resource {
        Resource::builtin("", "configmaps")
    }

    fn widgets() -> Resource {
        Resource::builtin("example.com", "widgets")
    }

    /// The condition of `kind` in a namespace's status: (status, message).
    fn condition(namespace: &Value, kind: &str) -> (String, String) {
        let found = namespace["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .expect("the condition");
        let text = |field: &str| found[field].as_str().unwrap_or_default().to_owned();
        (text("status"), text("message"))
    }

    #[tokio::test]
    async fn only_a_deleting_namespace_with_the_finalizer_is_emptied() {
        let mut released = fake::deleting(fake::namespace("dev"));
        released["spec"]["finalizers"] = json!([]);
        let settings = json!({"metadata": {"name": "settings", "namespace": "dev"}});
        fake::table(
            reconcile,
            "",
            "dev",
            vec![
                Case {
                    name: "an active namespace keeps its content",
                    given: vec![
                        (RESOURCE.clone(), fake::namespace("dev")),
                        (configmaps(), settings.clone()),
                    ],
                    writes: vec![],
                },
                Case {
                    name: "a namespace without the finalizer is not this controller's",
                    given: vec![(RESOURCE.clone(), released), (configmaps(), settings)],
                    writes: vec![],
                },
                Case {
                    name: "a namespace gone is nothing to do",
                    given: vec![],
                    writes: vec![],
                },
                Case {
                    name: "an empty namespace is released at once",
                    given: vec![(RESOURCE.clone(), fake::deleting(fake::namespace("dev")))],
                    writes: vec![
                        "update/status namespaces dev",
                        "update/finalize namespaces dev",
                    ],
                },
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn content_is_deleted_then_the_namespace_released() {
        let api = Fake::with([
            (RESOURCE.clone(), fake::deleting(fake::namespace("dev"))),
            (
                configmaps(),
                json!({"metadata": {"name": "settings", "namespace": "dev"}}),
            ),
            (
                configmaps(),
                json!({"metadata": {"name": "settings", "namespace": "prod"}}),
            ),
        ]);
        api.serve(&widgets(), "v1", "Widget");
        let held = json!({"metadata": {"name": "w", "namespace": "dev", "finalizers": ["example.com/hold"]}});
        api.given(&widgets(), held);

        // The first pass deletes everything; the widget's finalizer holds it, which the
        // conditions say, and the namespace is looked at again.
        let (requeue, writes) = api.reconcile(reconcile, "", "dev").await;
        assert_eq!(
            writes,
            [
                "delete configmaps dev/settings",
                "delete widgets.example.com dev/w",
                "update/status namespaces dev",
            ]
        );
        assert_eq!(requeue, Some(HELD));
        let namespace = api.object(&RESOURCE, None, "dev").expect("still there");
        assert_eq!(
            condition(&namespace, "NamespaceContentRemaining"),
            (
                "True".into(),
                "Some resources are remaining: widgets.example.com has 1 resource instances".into()
            )
        );
        assert_eq!(
            condition(&namespace, "NamespaceFinalizersRemaining"),
            (
                "True".into(),
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()
            )
        );
        assert!(
            api.object(&configmaps(), Some("prod"), "settings")
                .is_some(),
            "another namespace's content is kept"
        );

        // While the widget is held the conditions stand as written: no status write.
        let (requeue, writes) = api.reconcile(reconcile, "", "dev").await;
        assert_eq!(writes, ["delete widgets.example.com dev/w"]);
        assert_eq!(requeue, Some(HELD));

        // Its finalizer's owner lets it go; the namespace is then empty and released.
        api.release(&widgets(), Some("dev"), "w", "example.com/hold")
            .await;
        let (requeue, writes) = api.reconcile(reconcile, "", "dev").await;
        assert_eq!(
            writes,
            [
                "update/status namespaces dev",
                "update/finalize namespaces dev"
            ]
        );
        assert_eq!(requeue, None);
        assert!(
            api.object(&RESOURCE, None, "dev").is_none(),
            "released, it is gone"
        );
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
