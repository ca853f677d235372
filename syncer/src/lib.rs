//! The syncer: a tenant's pods run as ordinary pods in namespaces of a host cluster, and
//! their status comes back to the tenant. It talks to the tenant and the host through the
//! public Kubernetes API only (kube-rs), so a host is any Kubernetes cluster.
//!
//! Each direction is a kube-runtime `Controller` (level-based reconciles, kube-runtime's
//! queue and backoff):
//! - `pods`: a tenant pod → its host pod, created in the host namespace of its namespace
//!   (`translate`), the tenant pod bound to the mirrored node its host pod was scheduled to
//!   and given the host pod's status; deletes carried down with their grace period and
//!   finished in the tenant once the host pod is gone (the syncer is the tenant's kubelet);
//! - `pods::collect`: a host pod of this tenant whose tenant pod is gone (or was made
//!   again with another uid) is deleted;
//! - `namespaces`: host namespaces made on first use, each with the workload account and a
//!   NetworkPolicy admitting only the same tenant's pods; one whose tenant namespace is gone
//!   or terminating is deleted, with everything in it;
//! - `copies`: the ConfigMaps and Secrets a pod names, copied beside it while a pod of
//!   their namespace uses them; every Service, with the host's addresses coming back; every
//!   ResourceQuota and LimitRange;
//!   copies deleted when unused or their tenant object is gone;
//! - `events`: what the host's scheduler and kubelets record about a host pod, copied to
//!   the tenant as Events about the tenant pod, in the tenant's names;
//! - `nodes`: a tenant Node for each host node that runs the tenant's pods, kept up to
//!   date, deleted when none runs there any more;
//! - `tokens` (part of the pod reconcile): each host pod's token Secret, holding tokens the
//!   tenant issued for its tenant pod in place of the projected service-account token,
//!   issued again at 80% of their life.
//!
//! - `placement` (one per tenant, above the per-host controllers): each tenant namespace
//!   placed on a host (pinned, spread, or the freest), each pod placed once before its host
//!   pod is made; the pods of a lost host marked for deletion, and replaced elsewhere by
//!   their controllers; `hosts`: the hosts' health, probed once for every tenant.
//!
//! The controllers above run once per (tenant, host), each acting only on what is placed
//! on its host. Only host objects carrying this tenant's markers
//! (`translate::Scope::owns`) are ever changed or deleted. Not built yet (issue 13's next
//! steps): endpoints of selector-less Services, the API's address in host pods, DNS,
//! per-host endpoints of spread Services, fair queuing across tenants (today one set of
//! controllers per tenant and host).

mod copies;
mod events;
mod hosts;
mod namespaces;
mod nodes;
mod placement;
mod pods;
mod tokens;
pub mod translate;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub use hosts::Hosts;

use kube::Client;

/// A cluster the syncer talks to: its name and a client of its API.
#[derive(Clone)]
pub struct Cluster {
    pub name: String,
    pub client: Client,
}

/// What is the same for every tenant a syncer serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform instance: the value of every host object's `vcluster.io/managed-by`.
    pub platform: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            platform: "vcluster".into(),
        }
    }
}

/// Why a reconcile failed (it is tried again with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the tenant's API")]
    Tenant(#[source] kube::Error),
    #[error("the host's API")]
    Host(#[source] kube::Error),
    #[error("{0} exists on the host and is not this tenant's: it is not touched")]
    NotOurs(String),
    #[error("an unexpected answer: {0}")]
    Unexpected(&'static str),
}

/// The field manager of the syncer's writes, on both sides.
const MANAGER: &str = "vcluster-syncer";

/// The options of the syncer's patches: its field manager.
fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// What every reconcile of one tenant on one host shares.
struct Ctx {
    scope: translate::Scope,
    tenant: Client,
    host: Client,
    /// Host namespaces known to exist (with the workload account), so that a pod create
    /// does not read its namespace first.
    namespaces: Mutex<HashSet<String>>,
    /// Host nodes whose mirrored node is known to exist in the tenant.
    nodes: Mutex<HashSet<String>>,
    /// Where the tenant's namespaces are placed, and the hosts' health.
    placement: Arc<placement::Placement>,
}

impl Ctx {
    /// Whether this host answers (while it does not, its reconciles wait).
    fn reachable(&self) -> bool {
        self.placement.hosts.reachable(&self.scope.host)
    }
}

/// Syncs `tenant`'s workloads to `hosts` until the end: the tenant's placement, and every
/// controller above on each host. One call per tenant, all with the same `hosts` (whose
/// [`Hosts::probe`] the caller runs once); a tenant that creates nothing costs its watches
/// only.
pub async fn run(tenant: Cluster, hosts: Arc<Hosts>, options: Options) {
    let placement = placement::Placement::new(hosts.clone());
    let on_hosts: Vec<_> = hosts
        .clusters()
        .iter()
        .map(|host| {
            on_host(Arc::new(Ctx {
                scope: translate::Scope {
                    platform: options.platform.clone(),
                    tenant: tenant.name.clone(),
                    host: host.name.clone(),
                },
                tenant: tenant.client.clone(),
                host: host.client.clone(),
                namespaces: Mutex::default(),
                nodes: Mutex::default(),
                placement: placement.clone(),
            }))
        })
        .collect();
    tracing::info!(tenant = %tenant.name, hosts = %hosts.names(), "syncer starting");
    tokio::join!(
        placement::run(
            tenant.name.clone(),
            tenant.client.clone(),
            placement.clone()
        ),
        futures::future::join_all(on_hosts),
    );
}

/// Every controller of one tenant on one host.
async fn on_host(ctx: Arc<Ctx>) {
    tokio::join!(
        pods::run(ctx.clone()),
        pods::collect(ctx.clone()),
        namespaces::run(ctx.clone()),
        nodes::run(ctx.clone()),
        events::run(ctx.clone()),
        copies::run::<k8s_openapi::api::core::v1::ConfigMap>(ctx.clone()),
        copies::run::<k8s_openapi::api::core::v1::Secret>(ctx.clone()),
        copies::run::<k8s_openapi::api::core::v1::Service>(ctx.clone()),
        copies::run::<k8s_openapi::api::core::v1::ResourceQuota>(ctx.clone()),
        copies::run::<k8s_openapi::api::core::v1::LimitRange>(ctx.clone()),
    );
}

/// An error with its causes, for a log line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs a controller's stream of reconcile results to its end, logging the failures
/// (`what` names the controller; retries are the controller's `retry`'s business).
async fn drive<T, E: std::error::Error>(
    results: impl futures::Stream<Item = Result<T, E>>,
    what: &'static str,
) {
    use futures::StreamExt;
    results
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %chain(&e), "syncer: {what}");
            }
        })
        .await;
}

/// Whether an API error is a 404.
fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (already exists, or a conflict).
fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
