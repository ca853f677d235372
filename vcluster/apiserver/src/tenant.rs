//! Tenants: many in one process. A tenant is its store prefix (a [`Scoped`] view), its
//! identity (CA, serving certificate, admin token) and its watch caches, created lazily.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use vcluster_core::object::{Fresh, prepare_create};
use vcluster_core::registry::{self, ResourceType};
use vcluster_store::{Backend, Scoped, Store};

use crate::cache::{CACHE_WAIT, Progress, WatchCache};
use crate::identity::{self, Identity, StoredIdentity};
use crate::metrics::Metrics;
use crate::metrics::store::Metered;
use crate::types::TypeSet;

/// Where identities are kept: outside every tenant's prefix (`/tenants/<name>/`), so no
/// tenant's store view can reach any identity.
const IDENTITIES: &str = "/vcluster/identities/";

/// The namespaces every cluster starts with.
pub const BOOTSTRAP_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store")]
    Store(#[from] vcluster_store::Error),
    #[error("identity")]
    Identity(#[from] identity::Error),
    #[error("the stored identity of tenant {0} is unreadable")]
    Corrupt(String, #[source] serde_json::Error),
}

pub struct Tenant {
    pub name: String,
    /// The tenant's keys: everything it owns, and nothing else.
    pub store: Arc<dyn Store>,
    pub identity: Identity,
    /// Watch caches by group, then plural (looked up without allocating).
    caches: RwLock<HashMap<String, HashMap<String, Arc<WatchCache>>>>,
    /// The types this tenant serves (built-ins and its custom resources).
    types: RwLock<Arc<TypeSet>>,
    /// The RBAC policy and the revisions of the role and binding caches it was built at.
    policy: RwLock<Option<(Vec<u64>, Arc<vcluster_core::rbac::Policy>)>>,
    /// Held while a cache is being started, so that each is started once.
    starting: Mutex<()>,
    /// How far the process has read the store's changes (every tenant's).
    progress: Arc<Progress>,
    /// Held while a Service is given addresses and stored (`services.rs`).
    pub(crate) allocating: Mutex<()>,
    /// The process's shutdown, which this tenant's watches end at.
    pub(crate) drain: Arc<Drain>,
    /// The store lease the events written in the last minute expire with, and when it was
    /// granted.
    event_lease: std::sync::Mutex<Option<(vcluster_store::LeaseId, std::time::Instant)>>,
    /// Requests received, for `vcluster_tenant_requests_total` (`metrics.rs`): counted here,
    /// not in a series of its own, so that only the busiest tenants become series.
    requests: std::sync::atomic::AtomicU64,
}

impl Tenant {
    pub(crate) fn count_request(&self) {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The types this tenant served when they were last made (see `crds::types`).
    pub(crate) fn current_types(&self) -> Arc<TypeSet> {
        self.types.read().expect("types lock").clone()
    }

    pub(crate) fn set_types(&self, types: Arc<TypeSet>) {
        *self.types.write().expect("types lock") = types;
    }

    /// The policy built at these revisions of the RBAC caches, if it is the current one.
    pub(crate) fn current_policy(
        &self,
        revisions: &[u64],
    ) -> Option<Arc<vcluster_core::rbac::Policy>> {
        let policy = self.policy.read().expect("policy lock");
        policy
            .as_ref()
            .filter(|(at, _)| at == revisions)
            .map(|(_, p)| p.clone())
    }

    pub(crate) fn set_policy(&self, revisions: Vec<u64>, policy: Arc<vcluster_core::rbac::Policy>) {
        *self.policy.write().expect("policy lock") = Some((revisions, policy));
    }

    /// The store lease an object of `rt` is written with: events expire an hour after their
    /// last write (upstream's `--event-ttl`), through one lease per minute of events (as
    /// upstream reuses leases); nothing else expires.
    pub(crate) async fn lease_for(
        &self,
        rt: &ResourceType,
    ) -> Result<Option<vcluster_store::LeaseId>, vcluster_store::Error> {
        const TTL: u64 = 3600;
        const REUSE: std::time::Duration = std::time::Duration::from_secs(60);
        if rt.kind != "Event" {
            return Ok(None);
        }
        if let Some((lease, granted)) = *self.event_lease.lock().expect("lease lock")
            && granted.elapsed() < REUSE
        {
            return Ok(Some(lease));
        }
        let lease = self.store.grant_lease(TTL + REUSE.as_secs()).await?;
        *self.event_lease.lock().expect("lease lock") = Some((lease, std::time::Instant::now()));
        Ok(Some(lease))
    }

    /// The watch cache of a resource, created on first use starting at `start` (the
    /// revision the first watcher asks for, so it is served without a gap).
    /// This tenant's watch cache of `rt` once it holds every change committed before the
    /// call (upstream's consistent read from the cache), with the store's revision at the
    /// call, which the cache's objects are the state of; `None` if it does not within
    /// [`CACHE_WAIT`] (or nothing follows the store's changes): the store is to be
    /// read instead, as upstream falls back to etcd.
    pub(crate) async fn consistent_cache(
        &self,
        rt: &ResourceType,
    ) -> Result<Option<(Arc<WatchCache>, u64)>, vcluster_store::Error> {
        let deadline = tokio::time::Instant::now() + CACHE_WAIT;
        let current = self.store.current_revision().await?;
        let needed = self
            .progress
            .needed(&self.name, &rt.group, &rt.plural, current, deadline)
            .await;
        let Some(needed) = needed else {
            return Ok(None);
        };
        let cache = self.cache(rt, 0).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        Ok(cache
            .wait_for(needed, left)
            .await
            .is_ok()
            .then_some((cache, current)))
    }

    pub async fn cache(
        &self,
        rt: &ResourceType,
        start: u64,
    ) -> Result<Arc<WatchCache>, vcluster_store::Error> {
        let running = || {
            let caches = self.caches.read().expect("caches lock");
            caches
                .get(&rt.group)
                .and_then(|g| g.get(&rt.plural))
                .filter(|c| c.is_alive())
                .cloned()
        };
        // Every request that reads a cache comes here: the common case takes a read lock.
        if let Some(cache) = running() {
            return Ok(cache);
        }
        let _one_at_a_time = self.starting.lock().await;
        if let Some(cache) = running() {
            return Ok(cache);
        }
        let prefix = registry::storage_prefix(rt, None);
        let cache = WatchCache::start(self.store.clone(), Bytes::from(prefix), start).await?;
        self.caches
            .write()
            .expect("caches lock")
            .entry(rt.group.clone())
            .or_default()
            .insert(rt.plural.clone(), cache.clone());
        Ok(cache)
    }
}

/// Every tenant of this process.
pub struct Tenants {
    backend: Arc<dyn Backend>,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    default: RwLock<Option<String>>,
    /// Tenant `t` answers to the host name `t.<domain>`.
    domain: String,
    /// Names every serving certificate carries besides the tenant's own (127.0.0.1, ...).
    names: Vec<String>,
    creating: Mutex<()>,
    /// Word of each tenant opened, for the controllers' feed.
    opened: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Set when the server begins to shut down: readiness then fails, watches end.
    drain: Arc<Drain>,
    /// What `/metrics` serves: the whole process's.
    metrics: Arc<Metrics>,
    /// How far the store's changes have been read, for every tenant's consistent lists.
    progress: Arc<Progress>,
}

/// Whether the process is shutting down, for everything that must then let go: readiness
/// fails, watches end cleanly so their clients re-list elsewhere.
#[derive(Debug)]
pub(crate) struct Drain(tokio::sync::watch::Sender<bool>);

impl Drain {
    fn new() -> Self {
        Self(tokio::sync::watch::channel(false).0)
    }

    pub(crate) fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the drain has begun.
    pub(crate) fn started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|draining| *draining).await;
        }
    }
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Fresh identifiers and the current time, for objects the server creates.
pub(crate) fn fresh() -> Fresh {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    Fresh {
        now: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        uid: uuid::Uuid::new_v4().to_string(),
        suffix,
    }
}

impl Tenants {
    pub fn new(backend: Arc<dyn Backend>, domain: impl Into<String>, names: Vec<String>) -> Self {
        Self {
            backend,
            tenants: RwLock::new(HashMap::new()),
            default: RwLock::new(None),
            domain: domain.into(),
            names,
            creating: Mutex::new(()),
            opened: tokio::sync::broadcast::channel(256).0,
            drain: Arc::new(Drain::new()),
            metrics: Arc::default(),
            progress: Arc::default(),
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Follows the store's changes for every tenant's consistent lists, until dropped.
    pub(crate) fn follow_progress(&self) -> impl Future<Output = ()> + Send + 'static {
        self.progress.clone().follow(self.backend.clone())
    }

    /// Marks the process as shutting down: `/readyz` fails and every watch ends from now on.
    pub fn start_draining(&self) {
        self.drain.0.send_replace(true);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// The names of the tenants opened from now on.
    pub(crate) fn opened(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.opened.subscribe()
    }

    /// The store every tenant lives in.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Every tenant opened so far.
    pub(crate) fn open(&self) -> Vec<Arc<Tenant>> {
        self.tenants
            .read()
            .expect("tenants lock")
            .values()
            .cloned()
            .collect()
    }

    /// The host name tenant `name` answers to.
    pub fn host(&self, name: &str) -> String {
        format!("{name}.{}", self.domain)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants
            .read()
            .expect("tenants lock")
            .get(name)
            .cloned()
    }

    pub fn by_host(&self, host: &str) -> Option<Arc<Tenant>> {
        let name = host.strip_suffix(&self.domain)?.strip_suffix('.')?;
        self.get(name)
    }

    pub fn default_tenant(&self) -> Option<Arc<Tenant>> {
        let name = self.default.read().expect("default lock").clone()?;
        self.get(&name)
    }

    /// Whether `name` is the default tenant: the platform's own, whose admin is the
    /// process's.
    pub(crate) fn is_default(&self, name: &str) -> bool {
        self.default.read().expect("default lock").as_deref() == Some(name)
    }

    /// The tenant served to connections that name none (no SNI, no path prefix).
    pub fn set_default(&self, name: &str) {
        *self.default.write().expect("default lock") = Some(name.to_owned());
    }

    /// Opens every tenant the store knows.
    pub async fn load_all(&self) -> Result<Vec<Arc<Tenant>>, Error> {
        let page = self
            .backend
            .range(vcluster_store::RangeRequest::prefix(IDENTITIES))
            .await?;
        let mut out = Vec::new();
        for kv in page.kvs {
            let name = String::from_utf8_lossy(&kv.key[IDENTITIES.len()..]).into_owned();
            out.push(self.open_or_create(&name).await?);
        }
        Ok(out)
    }

    /// Opens a tenant, creating it (identity and bootstrap objects) if it is new.
    pub async fn open_or_create(&self, name: &str) -> Result<Arc<Tenant>, Error> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        let _one_at_a_time = self.creating.lock().await;
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        // Every store operation of the tenant passes here: where they are measured.
        let scoped = Arc::new(Scoped::tenant(self.backend.clone(), name)?);
        let store: Arc<dyn Store> = Arc::new(Metered::new(scoped, self.metrics.store.clone()));
        let key = Bytes::from(format!("{IDENTITIES}{name}"));
        let stored = match self.backend.get(&key).await? {
            Some(kv) => {
                let mut stored = serde_json::from_slice::<StoredIdentity>(&kv.value)
                    .map_err(|e| Error::Corrupt(name.to_owned(), e))?;
                if stored.complete()? {
                    // Stored by an older version: keep what was added, so that it lasts.
                    let value = serde_json::to_vec(&stored).expect("an identity serializes");
                    self.backend
                        .update(key, Bytes::from(value), Some(kv.mod_revision), None)
                        .await?;
                }
                stored
            }
            None => {
                let stored = identity::generate(name)?;
                let value = serde_json::to_vec(&stored).expect("an identity serializes");
                self.backend.create(key, Bytes::from(value), None).await?;
                stored
            }
        };
        let mut names = self.names.clone();
        names.push(self.host(name));
        let identity = Identity::load(&stored, &names, format!("https://{}", self.host(name)))?;
        bootstrap(store.as_ref()).await?;
        let tenant = Arc::new(Tenant {
            name: name.to_owned(),
            store,
            identity,
            caches: RwLock::new(HashMap::new()),
            starting: Mutex::new(()),
            progress: self.progress.clone(),
            allocating: Mutex::new(()),
            event_lease: std::sync::Mutex::new(None),
            types: RwLock::new(Arc::default()),
            policy: RwLock::new(None),
            drain: self.drain.clone(),
            requests: Default::default(),
        });
        self.tenants
            .write()
            .expect("tenants lock")
            .insert(name.to_owned(), tenant.clone());
        // The controllers' feed saw the bootstrap objects before the tenant was registered:
        // word of it lets the controllers look at them again (no one may be listening yet).
        let _ = self.opened.send(Arc::from(name));
        tracing::info!(tenant = name, "tenant ready");
        Ok(tenant)
    }
}

/// The `kubernetes` Service's address: the first of the tenant's service range.
pub(crate) const KUBERNETES_IP: &str = "10.96.0.1";

/// The `kubernetes` Service every cluster has in `default`.
fn kubernetes_service() -> Value {
    json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_IP,
            "clusterIPs": [KUBERNETES_IP],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
        },
    })
}

/// The APIService of every group-version this server serves itself, as kube-apiserver's
/// aggregator registers them (`v1.`, `v1.apps`, ...), with upstream's priorities.
fn local_api_services() -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    registry::BUILTINS
        .iter()
        .filter(|rt| seen.insert((rt.group.clone(), rt.version.clone())))
        .map(|rt| {
            let (group_priority, version_priority) = api_service_priority(&rt.group, &rt.version);
            json!({
                "metadata": {"name": format!("{}.{}", rt.version, rt.group)},
                "spec": {
                    "group": rt.group,
                    "version": rt.version,
                    "groupPriorityMinimum": group_priority,
                    "versionPriority": version_priority,
                },
            })
        })
        .collect()
}

/// kube-apiserver's APIService priorities: a group's minimum (the core group first), and
/// within it a version's (GA above beta above alpha). Groups its table does not name get
/// the lowest.
fn api_service_priority(group: &str, version: &str) -> (i64, i64) {
    let group_priority = match group {
        "" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "apiextensions.k8s.io" | "admissionregistration.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        _ => 16000,
    };
    let version_priority = match version {
        "v2" => 30,
        v if v.contains("alpha") => 1,
        v if v.contains("beta") => 9,
        _ => 15,
    };
    (group_priority, version_priority)
}

/// Creates what every cluster starts with, where missing.
async fn bootstrap(store: &dyn Store) -> Result<(), vcluster_store::Error> {
    let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are built in");
    let mut objects: Vec<(Arc<ResourceType>, serde_json::Value)> = BOOTSTRAP_NAMESPACES
        .iter()
        .map(|ns| {
            let body = json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}});
            (namespaces.clone(), body)
        })
        .collect();
    for (plural, body) in vcluster_core::rbac::bootstrap() {
        let rt = registry::find("rbac.authorization.k8s.io", "v1", plural)
            .expect("RBAC types are built in");
        objects.push((rt, body));
    }
    let services = registry::find("", "v1", "services").expect("services are built in");
    objects.push((services, kubernetes_service()));
    let apiservices = registry::find("apiregistration.k8s.io", "v1", "apiservices")
        .expect("APIServices are built in");
    for body in local_api_services() {
        objects.push((apiservices.clone(), body));
    }
    // Created together, so that the store commits them in one batch.
    let creates = objects.into_iter().map(|(rt, body)| async move {
        let namespace = body
            .pointer("/metadata/namespace")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let object = prepare_create(&rt, body, namespace.as_deref(), &fresh())
            .expect("bootstrap objects are valid");
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = Bytes::from(registry::storage_key(&rt, namespace.as_deref(), &name));
        let value = Bytes::from(serde_json::to_vec(&object).expect("json"));
        match store.create(key, value, None).await {
            Ok(_) | Err(vcluster_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    });
    futures::future::try_join_all(creates).await.map(drop)
}
