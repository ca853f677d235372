//! Mirrored nodes: the tenant sees a Node for each host node that runs its pods, named
//! `<host node>.<host>` (`translate::Scope::mirrored_node`), with the host node's topology
//! labels, capacity, conditions and addresses. [`ensure`] makes one before a tenant pod is
//! bound to it; [`run`] refreshes their status and deletes those no tenant pod is bound to
//! any more. No leases are written: a mirrored node's heartbeat is its host's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use serde_json::json;

use crate::{Ctx, Error, chain, conflict, not_found, patch_params, translate};

/// How often the mirrored nodes are refreshed and collected.
const REFRESH: Duration = Duration::from_secs(10);

/// Makes the tenant's mirror of host node `node` if it is not known to exist.
pub(crate) async fn ensure(ctx: &Ctx, node: &str) -> Result<(), Error> {
    if ctx.nodes.lock().expect("nodes").contains(node) {
        return Ok(());
    }
    let host_nodes: Api<Node> = Api::all(ctx.host.clone());
    let host = host_nodes.get(node).await.map_err(Error::Host)?;
    let mirrored = ctx.scope.node_to_tenant(&host);
    let tenant_nodes: Api<Node> = Api::all(ctx.tenant.clone());
    match tenant_nodes.create(&PostParams::default(), &mirrored).await {
        Ok(_) => {}
        Err(e) if conflict(&e) => {}
        Err(e) => return Err(Error::Tenant(e)),
    }
    write_status(&tenant_nodes, &mirrored).await?;
    ctx.nodes.lock().expect("nodes").insert(node.to_owned());
    Ok(())
}

/// A mirrored node's status, as its host node's is now.
async fn write_status(tenant_nodes: &Api<Node>, mirrored: &Node) -> Result<(), Error> {
    let Some(status) = mirrored.status.as_ref() else {
        return Ok(());
    };
    let patch = Patch::Merge(json!({"status": status}));
    tenant_nodes
        .patch_status(&mirrored.name_any(), &patch_params(), &patch)
        .await
        .map_err(Error::Tenant)?;
    Ok(())
}

/// Every [`REFRESH`]: the mirrored nodes of this host in the tenant, refreshed from their
/// host nodes, and deleted when no tenant pod is bound to them.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let mut health = ctx.placement.hosts.changes();
    loop {
        // At once when the host's health changes.
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            _ = health.changed() => {}
        }
        let refreshed = if ctx.reachable() {
            refresh(&ctx).await
        } else {
            unreachable(&ctx).await
        };
        if let Err(e) = refreshed {
            tracing::warn!(tenant = %ctx.scope.tenant, error = %chain(&e), "syncer: cannot refresh the mirrored nodes");
        }
    }
}

/// Whether a mirrored node's status differs from its host node's in what a tenant acts on:
/// capacity, addresses, node info and conditions (heartbeat times aside, which would make a
/// write of every node at every host heartbeat).
fn changed(now: Option<&NodeStatus>, wanted: Option<&NodeStatus>) -> bool {
    let conditions = |s: Option<&NodeStatus>| {
        s.and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let rest = |s: Option<&NodeStatus>| {
        s.map(|s| {
            (
                s.capacity.clone(),
                s.allocatable.clone(),
                s.addresses.clone(),
                s.node_info.clone(),
            )
        })
    };
    conditions(now) != conditions(wanted) || rest(now) != rest(wanted)
}

/// The mirrored nodes of this host in the tenant.
async fn mirrored(ctx: &Ctx) -> Result<Vec<Node>, Error> {
    let tenant_nodes: Api<Node> = Api::all(ctx.tenant.clone());
    let selector = format!(
        "{}=true,{}={}",
        translate::MIRRORED_NODE,
        translate::HOST_CLUSTER,
        ctx.scope.host
    );
    let list = tenant_nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::Tenant)?;
    Ok(list.items)
}

/// While the host is unreachable: its mirrored nodes `Unknown` and tainted
/// (`translate::unreachable_node`).
async fn unreachable(ctx: &Ctx) -> Result<(), Error> {
    let tenant_nodes: Api<Node> = Api::all(ctx.tenant.clone());
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    for node in mirrored(ctx).await? {
        let Some((conditions, taints)) = translate::unreachable_node(&node, &now) else {
            continue;
        };
        let name = node.name_any();
        let spec = Patch::Merge(json!({"spec": {"taints": taints}}));
        let status = Patch::Merge(json!({"status": {"conditions": conditions}}));
        tenant_nodes
            .patch(&name, &patch_params(), &spec)
            .await
            .map_err(Error::Tenant)?;
        tenant_nodes
            .patch_status(&name, &patch_params(), &status)
            .await
            .map_err(Error::Tenant)?;
    }
    Ok(())
}

async fn refresh(ctx: &Ctx) -> Result<(), Error> {
    let tenant_nodes: Api<Node> = Api::all(ctx.tenant.clone());
    let mirrored = mirrored(ctx).await?;
    if mirrored.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::all(ctx.tenant.clone());
    let in_use: HashSet<String> = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::Tenant)?
        .items
        .into_iter()
        .filter_map(|p| p.spec.and_then(|s| s.node_name))
        .collect();
    let host_nodes: Api<Node> = Api::all(ctx.host.clone());
    for node in mirrored {
        let name = node.name_any();
        let Some(host_node) = ctx.scope.host_node(&name).map(str::to_owned) else {
            continue;
        };
        if !in_use.contains(&name) {
            ctx.nodes.lock().expect("nodes").remove(&host_node);
            match tenant_nodes.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(Error::Tenant(e)),
            }
            continue;
        }
        // A node gone from the host took its pods' host pods with it, which the pod
        // controller carries up; its mirror goes once no pod is bound to it.
        if let Some(host) = host_nodes.get_opt(&host_node).await.map_err(Error::Host)? {
            let wanted = ctx.scope.node_to_tenant(&host);
            if let Some(taints) = translate::reachable_taints(&node) {
                let patch = Patch::Merge(json!({"spec": {"taints": taints}}));
                tenant_nodes
                    .patch(&name, &patch_params(), &patch)
                    .await
                    .map_err(Error::Tenant)?;
            }
            if changed(node.status.as_ref(), wanted.status.as_ref()) {
                write_status(&tenant_nodes, &wanted).await?;
            }
        }
    }
    Ok(())
}
