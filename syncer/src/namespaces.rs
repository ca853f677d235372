//! Host namespaces: made when the first object of a tenant namespace goes down
//! ([`ensure`]), with the service account host pods run as and the NetworkPolicy that
//! keeps other tenants' pods out; deleted, with everything in
//! them, when their tenant namespace is gone or terminating ([`run`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Ctx, Error, chain, conflict, not_found, translate};

/// Makes the host namespace of tenant namespace `namespace` and its workload account, if
/// they are not known to exist. A namespace of that name that is not this tenant's is never
/// used.
pub(crate) async fn ensure(ctx: &Ctx, namespace: &str) -> Result<(), Error> {
    let host_namespace = ctx.scope.host_namespace(namespace);
    if ctx
        .namespaces
        .lock()
        .expect("namespaces")
        .contains(&host_namespace)
    {
        return Ok(());
    }
    let tenant_namespaces: Api<Namespace> = Api::all(ctx.tenant.clone());
    let tenant = tenant_namespaces
        .get(namespace)
        .await
        .map_err(Error::Tenant)?;
    let host_namespaces: Api<Namespace> = Api::all(ctx.host.clone());
    let made = ctx.scope.namespace_to_host(&tenant);
    match host_namespaces.create(&PostParams::default(), &made).await {
        Ok(_) => {}
        Err(e) if conflict(&e) => {
            let existing = host_namespaces
                .get(&host_namespace)
                .await
                .map_err(Error::Host)?;
            if !ctx.scope.owns(&existing.metadata) {
                return Err(Error::NotOurs(format!("namespace {host_namespace}")));
            }
        }
        Err(e) => return Err(Error::Host(e)),
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.host.clone(), &host_namespace);
    made_once(&accounts, &ctx.scope.workload_account(namespace)).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.host.clone(), &host_namespace);
    made_once(&policies, &ctx.scope.isolation_policy(namespace)).await?;
    ctx.namespaces
        .lock()
        .expect("namespaces")
        .insert(host_namespace);
    Ok(())
}

/// Creates a host object that, once made, stays as it is (one already there is kept).
async fn made_once<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(Error::Host(e)),
    }
}

/// Forgets that the host namespace of `namespace` exists (a create in it failed).
pub(crate) fn forget(ctx: &Ctx, namespace: &str) {
    let host_namespace = ctx.scope.host_namespace(namespace);
    ctx.namespaces
        .lock()
        .expect("namespaces")
        .remove(&host_namespace);
}

/// The host namespaces of this tenant, each checked against its tenant namespace.
/// A tenant namespace's change (its deletion above all) looks at its host namespace.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let host_namespaces: Api<Namespace> = Api::all(ctx.host.clone());
    let tenant_namespaces: Api<Namespace> = Api::all(ctx.tenant.clone());
    let selected = watcher::Config::default().labels(&ctx.scope.selector());
    let scope = ctx.scope.clone();
    let results = Controller::new(host_namespaces, selected)
        .watches(
            tenant_namespaces,
            watcher::Config::default(),
            move |ns: Namespace| Some(ObjectRef::new(&scope.host_namespace(&ns.name_any()))),
        )
        .run(reconcile, retry, ctx);
    crate::drive(results, "host namespace check").await;
}

fn retry(_namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(tenant = %ctx.scope.tenant, error = %chain(error), "syncer: a host namespace could not be checked; trying again");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(host: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(origin) = translate::origin(&host.metadata).filter(|_| ctx.scope.owns(&host.metadata))
    else {
        return Ok(Action::await_change());
    };
    if host.metadata.deletion_timestamp.is_some() {
        ctx.namespaces
            .lock()
            .expect("namespaces")
            .remove(&host.name_any());
        return Ok(Action::await_change());
    }
    let tenant_namespaces: Api<Namespace> = Api::all(ctx.tenant.clone());
    let tenant = tenant_namespaces
        .get_opt(&origin.name)
        .await
        .map_err(Error::Tenant)?;
    let live = tenant.is_some_and(|t| {
        t.uid().as_deref() == Some(origin.uid.as_str()) && t.metadata.deletion_timestamp.is_none()
    });
    if live {
        // Known from here on (after a restart too), so that the copies of objects no pod
        // uses any more are looked for in it.
        ctx.namespaces
            .lock()
            .expect("namespaces")
            .insert(host.name_any());
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    tracing::info!(tenant = %ctx.scope.tenant, namespace = %origin.name, host_namespace = %host.name_any(), "syncer: the tenant namespace is going; deleting its host namespace");
    ctx.namespaces
        .lock()
        .expect("namespaces")
        .remove(&host.name_any());
    let params = DeleteParams {
        preconditions: host.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let host_namespaces: Api<Namespace> = Api::all(ctx.host.clone());
    match host_namespaces.delete(&host.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if not_found(&e) || conflict(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::Host(e)),
    }
}
