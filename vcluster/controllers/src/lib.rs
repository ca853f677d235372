//! The controllers a Kubernetes cluster runs (upstream's kube-controller-manager), for
//! every tenant of a process at once.
//!
//! They see the process's objects through one feed of changes ([`Change`], from one store
//! watch over all tenants) and act through [`Api`], the API server's own write path
//! (admission, validation, defaulting), as the tenant's system. A controller keeps no
//! state of its own per tenant: a change queues the key of the object to reconcile, and the
//! reconcile reads what it needs through [`Api`], whose reads are never older than the
//! change that queued it nor than the controllers' own writes. So an idle tenant costs the
//! controllers nothing, and a reconcile never acts on a stale read of its own writes (which
//! is what upstream's "expectations" guard against).
//!
//! - [`replicaset`]: pods to match a ReplicaSet's replicas, and its status.
//! - [`deployment`]: ReplicaSets per pod template, rolling updates and recreates, revisions,
//!   pause, the progress deadline, the status `kubectl rollout status` and `helm --wait`
//!   read.
//! - [`statefulset`]: pods with stable names and claims, ordered or parallel, rolling
//!   updates by revision down to a partition.
//! - [`daemonset`]: one pod per node that fits, rolling updates within `maxUnavailable`.
//! - [`job`]: pods until completions succeed, within parallelism, backoff limit and
//!   deadline; the conditions helm hooks and `kubectl wait` read.
//! - [`cronjob`]: Jobs at the times of a schedule, with the concurrency policy, the
//!   starting deadline and history limits.
//! - [`endpoints`]: the `Endpoints` and EndpointSlice of every Service with a selector.
//! - [`resourcequota`]: each quota's `status.used`.
//! - [`hpa`]: HorizontalPodAutoscalers: replicas kept within bounds, and (there being no
//!   metrics) `ScalingActive=False` as upstream reports it.
//! - [`gc`]: the garbage collector: dependents of deleted owners (background), the
//!   `foregroundDeletion` and `orphan` finalizers, dangling owner references.
//! - [`namespace`]: a deleted namespace's content deleted, then the namespace, with
//!   upstream's deletion conditions meanwhile.
//! - [`serviceaccounts`]: every namespace's `default` ServiceAccount and `kube-root-ca.crt`.
//! - [`token`]: legacy service-account token Secrets filled with a token.
//! - [`crd`]: a deleted CRD's objects deleted, then the CRD.
//! - [`apiservice`]: every APIService's `Available` condition.
//!
//! Their work queues and reconciles are measured in [`Metrics`], which the caller of
//! [`run_with_metrics`] registers where it serves metrics.

mod apiservice;
mod crd;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod events;
#[cfg(test)]
mod fake;
mod gc;
mod hpa;
mod job;
mod metrics;
mod namespace;
mod pods;
mod queue;
mod replicaset;
mod resourcequota;
mod serviceaccounts;
mod statefulset;
mod token;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use vcluster_core::object::UpdateScope;
use vcluster_core::status::{ApiError, Reason};

pub use events::{EventType, Pending, Recorder, write_events};
pub use metrics::Metrics;
pub use queue::Key;
use queue::Queue;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// A resource as the store keeps it: its group (`""` for the core group) and plural.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    pub group: String,
    pub plural: String,
    pub namespaced: bool,
}

impl Resource {
    fn builtin(group: &str, plural: &str) -> Self {
        Self {
            group: group.to_owned(),
            plural: plural.to_owned(),
            namespaced: true,
        }
    }
}

/// One object written or deleted in some tenant.
#[derive(Debug, Clone)]
pub struct Change {
    pub tenant: Arc<str>,
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: String,
    /// The object now (`None`: deleted), with its resourceVersion.
    pub object: Option<Arc<Value>>,
    /// The object before the change (`None`: created).
    pub previous: Option<Arc<Value>>,
}

/// What the feed delivers: changes; word that some were missed (the store watch was
/// restarted), after which every tenant is swept; or a tenant opened while the process
/// runs, which is swept (the feed saw its first objects before it was open).
#[derive(Debug, Clone)]
pub enum Feed {
    Change(Change),
    Resync,
    Opened(Arc<str>),
}

/// The API server's write path, as the controllers use it: a tenant's objects, read fresh
/// from its store, and written with the same admission and validation as a client's
/// writes. Errors are the API's (`404`, `409`, `403`, ...).
#[async_trait::async_trait]
pub trait Api: Send + Sync + 'static {
    /// The tenants of the process, for a sweep.
    fn tenants(&self) -> Vec<Arc<str>>;
    /// The objects of `resource` (in `namespace`, or everywhere), including every change
    /// the feed has delivered and every write made through this `Api`.
    async fn list(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>>;
    async fn get(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>>;
    async fn create(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value>;
    /// Replaces an object, or (by `scope`) its status or a namespace's `spec.finalizers`;
    /// `409` if its resourceVersion is stale.
    async fn replace(
        &self,
        tenant: &str,
        resource: &Resource,
        object: &Value,
        scope: UpdateScope,
    ) -> Result<Value>;
    /// Deletes an object, with `DeleteOptions` (propagation, preconditions). `Some` is the
    /// object still there, marked for deletion and held by finalizers; `None`, it is gone.
    async fn delete(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: Value,
    ) -> Result<Option<Value>>;
    /// The names of the stored objects of `resource` in `namespace` that cannot be read,
    /// which [`Api::list`] leaves out: the namespace controller deletes them with the rest.
    async fn unreadable(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: &str,
    ) -> Result<Vec<String>>;
    /// Every object of the tenant, with its resource.
    async fn everything(&self, tenant: &str) -> Result<Vec<(Resource, Value)>>;
    /// The resource that serves `kind` of `api_version` in the tenant.
    async fn resource_of(&self, tenant: &str, api_version: &str, kind: &str) -> Option<Resource>;
    /// Every resource the tenant serves objects of (built-in and custom), each once.
    async fn resources(&self, tenant: &str) -> Result<Vec<Resource>>;
    /// The tenant's CA certificate (PEM), which every namespace publishes.
    fn root_ca(&self, tenant: &str) -> Result<String>;
    /// A service-account token for a legacy token Secret, signed with the tenant's key.
    fn legacy_token(&self, tenant: &str, token: &LegacyToken) -> Result<String>;
    /// Where the controllers record events (written by [`write_events`] through this `Api`).
    fn recorder(&self) -> &Recorder;
}

/// What a legacy token Secret's token stands for: the account, and the Secret it is bound
/// to (it authenticates while both exist with these uids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyToken {
    pub namespace: String,
    pub account: String,
    pub account_uid: String,
    pub secret: String,
    pub secret_uid: String,
}

/// How many reconciles of one controller run at once.
const WORKERS: usize = 4;

/// One workload controller: the resource it reconciles, what it watches, its queue.
struct Controller {
    resource: &'static Resource,
    watch: fn(&Change, &Queue),
    queue: Queue,
}

impl Controller {
    fn start<F>(
        api: &Arc<dyn Api>,
        measured: metrics::QueueMetrics,
        resource: &'static Resource,
        watch: fn(&Change, &Queue),
        reconcile: fn(Arc<dyn Api>, Key) -> F,
    ) -> Self
    where
        F: Future<Output = Result<Requeue>> + Send + 'static,
    {
        Self {
            resource,
            watch,
            queue: Queue::start(WORKERS, queue::reconciler(api.clone(), reconcile), measured),
        }
    }
}

/// Runs every controller on `feed` until it closes.
pub async fn run(api: Arc<dyn Api>, feed: mpsc::Receiver<Feed>) {
    run_with_metrics(api, feed, Metrics::default()).await;
}

/// [`run`], measuring the controllers in `metrics`.
pub async fn run_with_metrics(api: Arc<dyn Api>, mut feed: mpsc::Receiver<Feed>, metrics: Metrics) {
    macro_rules! controller {
        ($module:ident) => {
            Controller::start(
                &api,
                metrics.queue(stringify!($module)),
                &$module::RESOURCE,
                $module::watch,
                $module::reconcile,
            )
        };
    }
    let controllers = Arc::new([
        controller!(replicaset),
        controller!(deployment),
        controller!(statefulset),
        controller!(daemonset),
        controller!(job),
        controller!(cronjob),
        controller!(endpoints),
        controller!(resourcequota),
        controller!(hpa),
        controller!(namespace),
        controller!(serviceaccounts),
        controller!(token),
        controller!(crd),
        controller!(apiservice),
    ]);
    let collector = gc::Collector::start(api.clone(), metrics.queue("gc"));
    while let Some(item) = feed.recv().await {
        match item {
            Feed::Change(change) => {
                for c in controllers.iter() {
                    (c.watch)(&change, &c.queue);
                }
                collector.watch(&change);
            }
            Feed::Resync => {
                let (api, controllers) = (api.clone(), controllers.clone());
                tokio::spawn(async move {
                    for tenant in api.tenants() {
                        for c in controllers.iter() {
                            sweep(&*api, &tenant, c.resource, &c.queue).await;
                        }
                    }
                });
                collector.resync();
            }
            Feed::Opened(tenant) => {
                let (api, controllers) = (api.clone(), controllers.clone());
                tokio::spawn(async move {
                    for c in controllers.iter() {
                        sweep(&*api, &tenant, c.resource, &c.queue).await;
                    }
                });
            }
        }
    }
}

/// Queues, for a controller of `resource` whose objects control objects of `child` (as
/// `kind`): a changed object of `resource`, and the controller of a changed `child`.
fn queue_for(change: &Change, queue: &Queue, resource: &Resource, child: &Resource, kind: &str) {
    if change.resource == *resource
        && let Some(object) = change.object.as_deref().or(change.previous.as_deref())
        && let Some(key) = Key::of(&change.tenant, object)
    {
        queue.add(key);
    } else if change.resource == *child {
        for object in [&change.object, &change.previous].into_iter().flatten() {
            if let Some(owner) = pods::controller_of(object).filter(|r| r["kind"] == kind)
                && let (Some(namespace), Some(name)) = (
                    vcluster_core::object::meta_str(object, "namespace"),
                    owner["name"].as_str(),
                )
            {
                queue.add(Key {
                    tenant: change.tenant.clone(),
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                });
            }
        }
    }
}

/// Deletes the object `namespace`/`name` of `resource` if it is still the one with `uid`,
/// its dependents following `propagation`. Already gone, or replaced by another of the same
/// name (a 409 on the uid precondition), is what was wanted.
async fn delete_exact(
    api: &dyn Api,
    tenant: &str,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    uid: Option<&str>,
    propagation: &str,
) -> Result<()> {
    let options = serde_json::json!({
        "propagationPolicy": propagation,
        "preconditions": {"uid": uid},
    });
    match api.delete(tenant, resource, namespace, name, options).await {
        Err(e) if !e.is(Reason::NotFound) && !e.is(Reason::Conflict) => Err(e),
        _ => Ok(()),
    }
}

/// [`delete_exact`] of an object as read, in the background.
async fn delete_object(
    api: &dyn Api,
    tenant: &str,
    resource: &Resource,
    object: &Value,
) -> Result<()> {
    use vcluster_core::object::meta_str;
    delete_exact(
        api,
        tenant,
        resource,
        meta_str(object, "namespace"),
        meta_str(object, "name").unwrap_or_default(),
        meta_str(object, "uid"),
        "Background",
    )
    .await
}

/// The pods resource, which most controllers create and delete.
static PODS: std::sync::LazyLock<Resource> =
    std::sync::LazyLock::new(|| Resource::builtin("", "pods"));

/// Creates a pod for `owner` as `component`, recording upstream's `SuccessfulCreate`
/// (`Created pod: <name>`), or `FailedCreate` (`Error creating: <why>`) when refused.
async fn create_pod(
    api: &dyn Api,
    tenant: &str,
    component: &'static str,
    owner: &Value,
    pod: Value,
) -> Result<Value> {
    use vcluster_core::object::meta_str;
    let namespace = meta_str(owner, "namespace");
    let created = api.create(tenant, &PODS, namespace, pod).await;
    let (kind, reason, message) = match &created {
        Ok(pod) => (
            EventType::Normal,
            "SuccessfulCreate",
            format!("Created pod: {}", meta_str(pod, "name").unwrap_or_default()),
        ),
        Err(e) => (
            EventType::Warning,
            "FailedCreate",
            format!("Error creating: {}", e.message),
        ),
    };
    api.recorder()
        .record(tenant, component, owner, kind, reason, message);
    created
}

/// Deletes a pod of `owner` as `component` ([`delete_object`]), recording upstream's
/// `SuccessfulDelete` (`Deleted pod: <name>`).
async fn delete_pod(
    api: &dyn Api,
    tenant: &str,
    component: &'static str,
    owner: &Value,
    pod: &Value,
) -> Result<()> {
    delete_object(api, tenant, &PODS, pod).await?;
    let name = vcluster_core::object::meta_str(pod, "name").unwrap_or_default();
    let message = format!("Deleted pod: {name}");
    let events = api.recorder();
    events.record(
        tenant,
        component,
        owner,
        EventType::Normal,
        "SuccessfulDelete",
        message,
    );
    Ok(())
}

/// Writes `status` as the status of `object` (of `resource`), unless it is that already.
async fn write_status(
    api: &dyn Api,
    tenant: &str,
    resource: &Resource,
    object: &Value,
    status: Value,
) -> Result<()> {
    if object["status"] == status {
        return Ok(());
    }
    let mut next = object.clone();
    next["status"] = status;
    api.replace(tenant, resource, &next, UpdateScope::Status)
        .await
        .map(drop)
}

/// Queues every object of `resource` in `tenant`.
async fn sweep(api: &dyn Api, tenant: &Arc<str>, resource: &Resource, queue: &Queue) {
    match api.list(tenant, resource, None).await {
        Ok(objects) => {
            for object in objects {
                if let Some(key) = Key::of(tenant, &object) {
                    queue.add(key);
                }
            }
        }
        Err(e) => {
            tracing::warn!(%tenant, resource = %resource.plural, error = %e.message, "sweep failed")
        }
    }
}

/// A controller's wait before it looks at an object again (a deadline, a minimum ready
/// time, a failed write).
type Requeue = Option<Duration>;
