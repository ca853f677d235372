//! Pods, both ways. Tenant pods are the primary: [`run`] makes each one's host pod, binds
//! the tenant pod where the host scheduled it, copies the host pod's status up and carries
//! deletes down. [`collect`] deletes host pods whose tenant pod is gone.
//!
//! One tenant pod uid maps to at most one host pod, ever: a host pod is created only for a
//! tenant pod that exists, is not being deleted and was never bound (a bound tenant pod
//! without a host pod lost it behind the syncer's back, and is deleted, as a kubelet that
//! lost a pod reports it gone: its controller makes another).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::translate::{self, Refused};
use crate::{Ctx, Error, chain, conflict, not_found, placement};

/// How often an object is looked at again with nothing changed (drift on either side).
const PATROL: Duration = Duration::from_secs(300);
/// How soon a deleted pod whose host pod is stopping is looked at again.
const STOPPING: Duration = Duration::from_secs(2);
/// How soon a pod of an unreachable host is looked at again.
pub(crate) const UNREACHABLE: Duration = Duration::from_secs(5);

/// The pod controller of one tenant on one host: tenant pods, and the host pods of this
/// tenant (label-selected) mapped back to their tenant pods.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let tenant_pods: Api<Pod> = Api::all(ctx.tenant.clone());
    let host_pods: Api<Pod> = Api::all(ctx.host.clone());
    let selected = watcher::Config::default().labels(&ctx.scope.selector());
    let results = Controller::new(tenant_pods, watcher::Config::default())
        .watches(host_pods, selected, |host: Pod| {
            let origin = translate::origin(&host.metadata)?;
            Some(ObjectRef::new(&origin.name).within(&origin.namespace?))
        })
        .run(reconcile, retry, ctx.clone());
    crate::drive(results, "pod reconcile").await;
}

fn retry(_pod: Arc<Pod>, error: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(tenant = %ctx.scope.tenant, error = %chain(error), "syncer: a pod could not be synced; trying again");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else {
        return Ok(Action::await_change());
    };
    // This host's pods only: bound to one of its nodes, or placed on it (`placement`).
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some();
    let here = if bound {
        bound_here(&pod, &ctx)
    } else {
        placement::placed_on(&pod) == Some(ctx.scope.host.as_str())
    };
    if !here {
        return Ok(Action::await_change());
    }
    if !ctx.reachable() {
        return Ok(Action::requeue(UNREACHABLE));
    }
    let name = pod.name_any();
    let tenant_pods: Api<Pod> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let host_pods: Api<Pod> =
        Api::namespaced(ctx.host.clone(), &ctx.scope.host_namespace(&namespace));
    let host = host_pods.get_opt(&name).await.map_err(Error::Host)?;
    let host = match host {
        Some(host) if !ctx.scope.owns(&host.metadata) => {
            return Err(Error::NotOurs(format!(
                "pod {}/{name}",
                ctx.scope.host_namespace(&namespace)
            )));
        }
        Some(host) if translate::origin(&host.metadata).is_none_or(|o| o.uid != uid) => {
            // A copy of an earlier tenant pod of that name: it goes first.
            delete_host(&host_pods, &host, Some(0)).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        host => host,
    };

    if pod.metadata.deletion_timestamp.is_some() {
        match host {
            Some(host) => {
                if host.metadata.deletion_timestamp.is_none() {
                    let grace = pod.metadata.deletion_grace_period_seconds;
                    delete_host(&host_pods, &host, grace).await?;
                }
                // Its end comes through the host pod's watch, and is looked for again
                // soon: a host watch that was down (the host unreachable) starts again
                // with a list, which says nothing of the pods that went meanwhile.
                return Ok(Action::requeue(STOPPING));
            }
            None => finish_delete(&tenant_pods, &name, &uid).await?,
        }
        return Ok(Action::await_change());
    }

    let Some(host) = host else {
        if bound_here(&pod, &ctx) {
            tracing::info!(tenant = %ctx.scope.tenant, pod = %format!("{namespace}/{name}"), "syncer: the host pod is gone; deleting the tenant pod");
            finish_delete(&tenant_pods, &name, &uid).await?;
            return Ok(Action::await_change());
        }
        if let Err(refused) = translate::host_policy(&pod) {
            refuse(&ctx, &tenant_pods, &pod, refused).await?;
            return Ok(Action::await_change());
        }
        crate::namespaces::ensure(&ctx, &namespace).await?;
        let mut wanted = ctx.scope.pod_to_host(&pod);
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links);
        if links != Some(false) {
            let services: Api<Service> = Api::namespaced(ctx.tenant.clone(), &namespace);
            let services = services
                .list(&ListParams::default())
                .await
                .map_err(Error::Tenant)?;
            translate::add_env(
                &mut wanted,
                &translate::service_env(&services.items, &ctx.scope.host),
            );
        }
        match host_pods.create(&PostParams::default(), &wanted).await {
            // Its token Secret at once, so that its kubelet waits for it as little as can be.
            Ok(created) => return Ok(requeue(crate::tokens::ensure(&ctx, &pod, &created).await?)),
            Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => {
                // Its namespace may have gone (or be going) behind the syncer's back: made
                // again on the next try.
                crate::namespaces::forget(&ctx, &namespace);
                return Err(Error::Host(e));
            }
        }
    };

    if host.metadata.deletion_timestamp.is_some() {
        // Deleted on the host (evicted, drained): the tenant pod follows.
        let grace = host.metadata.deletion_grace_period_seconds;
        let params = DeleteParams {
            grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
            preconditions: Some(uid_is(&uid)),
            ..DeleteParams::default()
        };
        match tenant_pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(e) if not_found(&e) || conflict(&e) => {}
            Err(e) => return Err(Error::Tenant(e)),
        }
    }
    let host_node = host.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let tenant_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if let (Some(node), None) = (host_node, tenant_node) {
        crate::nodes::ensure(&ctx, node).await?;
        bind(&tenant_pods, &name, &uid, &ctx.scope.mirrored_node(node)).await?;
    }
    if let Some(status) = host.status.as_ref() {
        let wanted = translate::status_up(&pod, status);
        if pod.status.as_ref() != Some(&wanted) {
            let patch = Patch::Merge(json!({"status": wanted}));
            tenant_pods
                .patch_status(&name, &crate::patch_params(), &patch)
                .await
                .map_err(Error::Tenant)?;
        }
    }
    if host.metadata.deletion_timestamp.is_some() {
        return Ok(Action::requeue(PATROL));
    }
    Ok(requeue(crate::tokens::ensure(&ctx, &pod, &host).await?))
}

/// Looked at again at the patrol, or sooner when its tokens are due.
fn requeue(tokens_due: Option<Duration>) -> Action {
    Action::requeue(tokens_due.map_or(PATROL, |due| due.min(PATROL)))
}

/// Whether the tenant pod was bound to a node of this host (so its host pod existed).
fn bound_here(pod: &Pod, ctx: &Ctx) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| ctx.scope.host_node(n).is_some())
}

fn uid_is(uid: &str) -> Preconditions {
    Preconditions {
        uid: Some(uid.to_owned()),
        resource_version: None,
    }
}

/// Deletes a host pod (with its uid as precondition, so a newer pod of that name is never
/// hit) with `grace` seconds.
async fn delete_host(host_pods: &Api<Pod>, host: &Pod, grace: Option<i64>) -> Result<(), Error> {
    let params = DeleteParams {
        grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
        preconditions: host.uid().as_deref().map(uid_is),
        ..DeleteParams::default()
    };
    match host_pods.delete(&host.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) || conflict(&e) => Ok(()),
        Err(e) => Err(Error::Host(e)),
    }
}

/// What a kubelet does once a pod's containers are gone: the tenant pod deleted at once.
async fn finish_delete(tenant_pods: &Api<Pod>, name: &str, uid: &str) -> Result<(), Error> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(uid_is(uid)),
        ..DeleteParams::default()
    };
    match tenant_pods.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) || conflict(&e) => Ok(()),
        Err(e) => Err(Error::Tenant(e)),
    }
}

/// Binds the tenant pod to the mirrored node, as the scheduler binds (`pods/binding`).
async fn bind(tenant_pods: &Api<Pod>, name: &str, uid: &str, node: &str) -> Result<(), Error> {
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            uid: Some(uid.to_owned()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    match tenant_pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Bound meanwhile, or gone: the next change says which.
        Err(e) if conflict(&e) || not_found(&e) => Ok(()),
        Err(e) => Err(Error::Tenant(e)),
    }
}

/// A pod the host may not run: it stays Pending in the tenant with a `PodScheduled=False`
/// condition saying why, and a warning event; nothing reaches the host.
async fn refuse(
    ctx: &Ctx,
    tenant_pods: &Api<Pod>,
    pod: &Pod,
    Refused(why): Refused,
) -> Result<(), Error> {
    const REASON: &str = "HostPolicy";
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some(REASON))
        });
    if already {
        return Ok(());
    }
    tracing::info!(tenant = %ctx.scope.tenant, pod = %pod.name_any(), why, "syncer: a pod is refused by the host policy");
    let condition = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some(REASON.into()),
        message: Some(why.clone()),
        last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        )),
        ..PodCondition::default()
    };
    let patch = Patch::Merge(json!({"status": {"phase": "Pending", "conditions": [condition]}}));
    tenant_pods
        .patch_status(&pod.name_any(), &crate::patch_params(), &patch)
        .await
        .map_err(Error::Tenant)?;
    let message = format!("not sent to host cluster {}: {why}", ctx.scope.host);
    let about = pod.object_ref(&());
    crate::events::record(&ctx.tenant, &about, "Warning", REASON, &message).await;
    Ok(())
}

/// The host pods of this tenant, each checked against its tenant pod: one whose tenant pod
/// is gone, or is another pod of the same name, is deleted (its uid as precondition).
/// A tenant pod's change (its deletion above all) looks at the host pod of its name.
pub(crate) async fn collect(ctx: Arc<Ctx>) {
    let host_pods: Api<Pod> = Api::all(ctx.host.clone());
    let tenant_pods: Api<Pod> = Api::all(ctx.tenant.clone());
    let selected = watcher::Config::default().labels(&ctx.scope.selector());
    let scope = ctx.scope.clone();
    let results = Controller::new(host_pods, selected)
        .watches(tenant_pods, watcher::Config::default(), move |pod: Pod| {
            let namespace = scope.host_namespace(&pod.namespace()?);
            Some(ObjectRef::new(&pod.name_any()).within(&namespace))
        })
        .run(collect_one, retry, ctx.clone());
    crate::drive(results, "host pod check").await;
}

async fn collect_one(host: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !ctx.scope.owns(&host.metadata) {
        return Ok(Action::await_change());
    }
    let Some(origin) = translate::origin(&host.metadata) else {
        return Ok(Action::await_change());
    };
    let Some(namespace) = origin.namespace.as_deref() else {
        return Ok(Action::await_change());
    };
    let tenant_pods: Api<Pod> = Api::namespaced(ctx.tenant.clone(), namespace);
    let tenant = tenant_pods
        .get_opt(&origin.name)
        .await
        .map_err(Error::Tenant)?;
    let gone = tenant
        .as_ref()
        .is_none_or(|t| t.uid().as_deref() != Some(origin.uid.as_str()));
    // A copy on a host its tenant pod is not on: left from before that host was lost.
    let elsewhere = tenant
        .as_ref()
        .and_then(|t| placement::host_of(t, &ctx.placement.hosts))
        .is_some_and(|on| on != ctx.scope.host);
    if gone || elsewhere {
        let host_pods: Api<Pod> =
            Api::namespaced(ctx.host.clone(), &host.namespace().unwrap_or_default());
        let why = if gone {
            "the tenant pod is gone"
        } else {
            "the tenant pod is on another host"
        };
        tracing::info!(tenant = %ctx.scope.tenant, pod = %format!("{namespace}/{}", origin.name), "syncer: {why}; deleting its host pod");
        delete_host(&host_pods, &host, Some(0)).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(PATROL))
}
