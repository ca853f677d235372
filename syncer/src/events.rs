//! Events up: what the host's components (its scheduler, its kubelets) record about a host
//! pod is copied to the tenant as an Event about the tenant pod, in the tenant's names
//! (`translate::Scope::event_to_tenant`), so that `kubectl describe pod` and `kubectl get
//! events` in the tenant tell what they would on a real cluster. A repeat on the host
//! (its `count` and `lastTimestamp`) updates the copy.
//!
//! The host's pod events are watched across all its namespaces (an Event carries no
//! labels to select by) and those outside this tenant's host namespaces are dropped: one
//! watch per tenant for now, until one syncer serves every tenant.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, ObjectReference, Pod};
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::{Ctx, Error, chain, conflict, translate};

/// Copies the host's pod events of this tenant's host namespaces to the tenant, until the
/// end.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let host_events: Api<Event> = Api::all(ctx.host.clone());
    let pods_only = watcher::Config::default().fields("involvedObject.kind=Pod");
    let results = Controller::new(host_events, pods_only).run(reconcile, retry, ctx.clone());
    crate::drive(results, "event copy").await;
}

fn retry(_event: Arc<Event>, error: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::debug!(tenant = %ctx.scope.tenant, error = %chain(error), "syncer: a host event could not be copied; trying again");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(event: Arc<Event>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(host_namespace) = event.namespace() else {
        return Ok(Action::await_change());
    };
    let ours = ctx
        .namespaces
        .lock()
        .expect("namespaces")
        .contains(&host_namespace);
    if !ours {
        return Ok(Action::await_change());
    }
    // The tenant namespace, as the host namespace's markers say (its name may be shortened).
    let namespaces: Api<Namespace> = Api::all(ctx.host.clone());
    let Some(marked) = namespaces
        .get_opt(&host_namespace)
        .await
        .map_err(Error::Host)?
        .filter(|n| ctx.scope.owns(&n.metadata))
    else {
        return Ok(Action::await_change());
    };
    let Some(namespace) = marked.labels().get(translate::NAMESPACE).cloned() else {
        return Ok(Action::await_change());
    };
    let Some(name) = event.involved_object.name.as_deref() else {
        return Ok(Action::await_change());
    };
    // Only about a host pod of a tenant pod that is still the one it was made for.
    let host_pods: Api<Pod> = Api::namespaced(ctx.host.clone(), &host_namespace);
    let Some(host_pod) = host_pods.get_opt(name).await.map_err(Error::Host)? else {
        return Ok(Action::await_change());
    };
    let Some(origin) = translate::origin(&host_pod.metadata)
        .filter(|_| ctx.scope.owns(&host_pod.metadata))
        .filter(|_| event.involved_object.uid == host_pod.metadata.uid)
    else {
        return Ok(Action::await_change());
    };
    let tenant_pods: Api<Pod> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let Some(pod) = tenant_pods
        .get_opt(&origin.name)
        .await
        .map_err(Error::Tenant)?
        .filter(|p| p.uid().as_deref() == Some(origin.uid.as_str()))
    else {
        return Ok(Action::await_change());
    };
    let wanted = ctx.scope.event_to_tenant(&event, &pod, &host_namespace);
    let events: Api<Event> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let event_name = wanted.name_any();
    match events.create(&PostParams::default(), &wanted).await {
        Ok(_) => {}
        Err(e) if conflict(&e) => {
            let existing = events.get(&event_name).await.map_err(Error::Tenant)?;
            let changed = existing.count != wanted.count
                || existing.last_timestamp != wanted.last_timestamp
                || existing.message != wanted.message;
            if changed {
                let mut replaced = wanted;
                replaced.metadata.resource_version = existing.resource_version();
                match events
                    .replace(&event_name, &PostParams::default(), &replaced)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
                    Err(e) => return Err(Error::Tenant(e)),
                }
            }
        }
        Err(e) => return Err(Error::Tenant(e)),
    }
    Ok(Action::await_change())
}

/// Records an Event in the tenant about one of its objects (`translate::tenant_event`); a
/// repeat adds to the count of the one already there. A failure is logged, never fatal:
/// events are what a reconcile tells, not what it does.
///
/// Written as core/v1 Events by hand rather than with kube-runtime's `Recorder`, which
/// writes events.k8s.io/v1: this API server keeps those apart from core/v1 (issue 13's
/// notes), so `kubectl describe` would not show them; and a kubelet, whose part the syncer
/// plays, records core/v1 Events too.
pub(crate) async fn record(
    tenant: &Client,
    about: &ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let wanted = translate::tenant_event(about, type_, reason, message, &now);
    let events: Api<Event> = Api::namespaced(
        tenant.clone(),
        wanted.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let result = match events.create(&PostParams::default(), &wanted).await {
        Err(e) if conflict(&e) => match events.get(&wanted.name_any()).await {
            Ok(mut existing) => {
                existing.count = Some(existing.count.unwrap_or(1) + 1);
                existing.last_timestamp = Some(now);
                events
                    .replace(&wanted.name_any(), &PostParams::default(), &existing)
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        },
        other => other.map(drop),
    };
    if let Err(e) = result {
        tracing::warn!(reason, error = %chain(&e), "syncer: cannot record an event");
    }
}
