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

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
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
