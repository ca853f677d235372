//! Objects that go down as copies, one generic pair of controllers for every such kind
//! ([`Copied`]): [`run`] with the tenant objects as the primary, and a collector with the
//! host copies as the primary (tenant object changes map to their copies), which deletes
//! the copies whose tenant object is gone.
//!
//! - ConfigMaps and Secrets go down only while a pod of their namespace names them (the
//!   design note's "used only"; `translate::References`): pod changes map to the objects
//!   they name; a copy is made when a pod starts to use its object, kept equal while used,
//!   and deleted when no pod uses it any more.
//! - ResourceQuotas and LimitRanges always go down, so that a tenant's limits hold on the
//!   host too.
//! - Services always go down. A new copy asks the host for the tenant's cluster IP and
//!   node ports, so that they are the same on both sides where the host can give them
//!   (several tenants share a host's service network, so it cannot always: then the host
//!   allocates its own); what the host allocated is kept on every later write, and comes
//!   back to the tenant Service in the annotation `vcluster.io/host-cluster-ips`
//!   (`<host>=<ip>`), with the copy's load-balancer status.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Pod, ResourceQuota, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::translate::{self, References, Scope};
use crate::{Ctx, Error, conflict, not_found, patch_params};

/// How often a copy is compared with its tenant object with nothing changed.
const PATROL: Duration = Duration::from_secs(300);

/// A kind that goes down as copies.
pub(crate) trait Copied:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Whether an object goes down only while a pod of its namespace names it.
    const WHILE_USED: bool;
    /// What its copies say they were made from (`translate::OBJECT_KIND`): host objects
    /// of this kind made from anything else (a pod's token Secret) are not copies.
    const KIND: &'static str;
    /// The objects of this kind a pod names (for [`Copied::WHILE_USED`] kinds).
    fn named(_refs: References) -> BTreeSet<String> {
        BTreeSet::new()
    }
    /// Whether a tenant object never goes down.
    fn kept(_tenant: &Self) -> bool {
        false
    }
    /// Its host copy: a new one (`existing` none), or the existing copy as it must be, with
    /// what the host decided in it kept.
    fn to_host(&self, scope: &Scope, existing: Option<&Self>) -> Self;
    /// A new copy's second try, when the host refused the first as invalid (a Service's
    /// addresses taken): none, no second try.
    fn second_try(_wanted: &Self) -> Option<Self> {
        None
    }
    /// What a copy must equal its wanted state in, as JSON.
    fn content(&self) -> Value;
    /// What the tenant object gets back from its copy: a merge patch of the object (its
    /// metadata) and one of its status, each only if it changes something.
    fn back(_tenant: &Self, _copy: &Self, _host: &str) -> (Option<Value>, Option<Value>) {
        (None, None)
    }
}

impl Copied for ConfigMap {
    const WHILE_USED: bool = true;
    const KIND: &'static str = translate::CONFIG_MAP_KIND;
    fn named(refs: References) -> BTreeSet<String> {
        refs.config_maps
    }
    fn to_host(&self, scope: &Scope, _existing: Option<&Self>) -> Self {
        scope.config_map_to_host(self)
    }
    fn content(&self) -> Value {
        json!([
            self.metadata.labels,
            self.metadata.annotations,
            self.data,
            self.binary_data,
            self.immutable
        ])
    }
}

impl Copied for Secret {
    const WHILE_USED: bool = true;
    const KIND: &'static str = translate::SECRET_KIND;
    fn named(refs: References) -> BTreeSet<String> {
        refs.secrets
    }
    fn to_host(&self, scope: &Scope, _existing: Option<&Self>) -> Self {
        scope.secret_to_host(self)
    }
    fn content(&self) -> Value {
        json!([
            self.metadata.labels,
            self.metadata.annotations,
            self.data,
            self.type_,
            self.immutable
        ])
    }
}

impl Copied for ResourceQuota {
    const WHILE_USED: bool = false;
    const KIND: &'static str = translate::QUOTA_KIND;
    fn to_host(&self, scope: &Scope, _existing: Option<&Self>) -> Self {
        scope.quota_to_host(self)
    }
    fn content(&self) -> Value {
        json!([self.metadata.labels, self.metadata.annotations, self.spec])
    }
}

impl Copied for LimitRange {
    const WHILE_USED: bool = false;
    const KIND: &'static str = translate::LIMIT_RANGE_KIND;
    fn to_host(&self, scope: &Scope, _existing: Option<&Self>) -> Self {
        scope.limit_range_to_host(self)
    }
    fn content(&self) -> Value {
        json!([self.metadata.labels, self.metadata.annotations, self.spec])
    }
}

impl Copied for Service {
    const WHILE_USED: bool = false;
    const KIND: &'static str = translate::SERVICE_KIND;
    fn kept(tenant: &Self) -> bool {
        // The tenant's own API: reached another way (the front door), never a host Service.
        tenant.metadata.namespace.as_deref() == Some("default")
            && tenant.metadata.name.as_deref() == Some("kubernetes")
    }
    fn to_host(&self, scope: &Scope, existing: Option<&Self>) -> Self {
        scope.service_to_host(self, existing)
    }
    fn second_try(wanted: &Self) -> Option<Self> {
        translate::without_addresses(wanted)
    }
    fn content(&self) -> Value {
        json!([self.metadata.labels, self.metadata.annotations, self.spec])
    }
    fn back(tenant: &Self, copy: &Self, host: &str) -> (Option<Value>, Option<Value>) {
        let ips = translate::host_cluster_ips(tenant, copy, host);
        let annotations = tenant.metadata.annotations.as_ref();
        let object = (annotations.and_then(|a| a.get(translate::HOST_CLUSTER_IPS)) != ips.as_ref())
            .then(|| json!({"metadata": {"annotations": {translate::HOST_CLUSTER_IPS: ips}}}));
        let balancer = |s: &Self| s.status.as_ref().and_then(|s| s.load_balancer.clone());
        let status = (balancer(tenant).unwrap_or_default() != balancer(copy).unwrap_or_default())
            .then(|| json!({"status": {"loadBalancer": balancer(copy).unwrap_or_default()}}));
        (object, status)
    }
}

/// What a pod names of kind `K`, as it goes down (after the translation turned the
/// tenant's token volume and its `kube-root-ca.crt` into the pod's token Secret).
fn named_by<K: Copied>(scope: &Scope, pod: &Pod) -> BTreeSet<String> {
    let host = scope.pod_to_host(pod);
    let mut refs = host.spec.as_ref().map(References::of).unwrap_or_default();
    // Its token Secret is the syncer's own (`tokens.rs`), not a copy.
    refs.secrets
        .remove(&translate::token_secret(&pod.name_any()));
    K::named(refs)
}

/// Both controllers of kind `K` for one tenant on one host.
pub(crate) async fn run<K: Copied>(ctx: Arc<Ctx>) {
    let mut down = Controller::new(
        Api::<K>::all(ctx.tenant.clone()),
        watcher::Config::default(),
    );
    if K::WHILE_USED {
        let scope = ctx.scope.clone();
        down = down.watches(
            Api::<Pod>::all(ctx.tenant.clone()),
            watcher::Config::default(),
            move |pod: Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                named_by::<K>(&scope, &pod)
                    .into_iter()
                    .map(move |name| ObjectRef::new(&name).within(&namespace))
            },
        );
    }
    let down =
        down.reconcile_all_on(ctx.placement.changes())
            .run(reconcile::<K>, retry, ctx.clone());
    let scope = ctx.scope.clone();
    let selected = watcher::Config::default().labels(&ctx.scope.selector());
    let collect = Controller::new(Api::<K>::all(ctx.host.clone()), selected)
        .watches(
            Api::<K>::all(ctx.tenant.clone()),
            watcher::Config::default(),
            move |tenant: K| {
                let namespace = scope.host_namespace(&tenant.namespace()?);
                Some(ObjectRef::new(&tenant.name_any()).within(&namespace))
            },
        )
        .run(collect_one::<K>, retry, ctx.clone());
    tokio::join!(
        crate::drive(down, "copy reconcile"),
        crate::drive(collect, "host copy check"),
    );
}

fn retry<K>(_object: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(tenant = %ctx.scope.tenant, error = %crate::chain(error), "syncer: an object could not be copied to the host; trying again");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile<K: Copied>(object: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (object.namespace(), object.uid()) else {
        return Ok(Action::await_change());
    };
    if K::kept(&object) {
        return Ok(Action::await_change());
    }
    // Only to the hosts its namespace is placed on; nothing before that is decided (a
    // placement's change looks at every object again).
    let Some(placed_here) = ctx.placement.wants(&namespace, &ctx.scope.host) else {
        return Ok(Action::await_change());
    };
    if !ctx.reachable() {
        return Ok(Action::requeue(crate::pods::UNREACHABLE));
    }
    let name = object.name_any();
    let wanted_down = placed_here
        && object.meta().deletion_timestamp.is_none()
        && (!K::WHILE_USED || {
            let pods: Api<Pod> = Api::namespaced(ctx.tenant.clone(), &namespace);
            pods.list(&ListParams::default())
                .await
                .map_err(Error::Tenant)?
                .items
                .iter()
                .any(|pod| named_by::<K>(&ctx.scope, pod).contains(&name))
        });
    let host_namespace = ctx.scope.host_namespace(&namespace);
    let copies: Api<K> = Api::namespaced(ctx.host.clone(), &host_namespace);
    // An unused object's copy can only be in a host namespace of this tenant's (which the
    // namespace controller has seen, after a restart too).
    let existing = if wanted_down
        || ctx
            .namespaces
            .lock()
            .expect("namespaces")
            .contains(&host_namespace)
    {
        copies.get_opt(&name).await.map_err(Error::Host)?
    } else {
        None
    };
    if let Some(copy) = &existing
        && (!ctx.scope.owns(copy.meta()) || !is_copy::<K>(copy))
    {
        // The host's own object of that name (its `kube-root-ca.crt` in every namespace):
        // in the way only of an object that must go down.
        if !wanted_down {
            return Ok(Action::await_change());
        }
        return Err(Error::NotOurs(format!("{host_namespace}/{name}")));
    }
    let stale = existing
        .as_ref()
        .is_some_and(|c| translate::origin(c.meta()).is_none_or(|o| o.uid != uid));
    if !wanted_down || stale {
        if let Some(copy) = &existing {
            delete(&copies, copy).await?;
        }
        return Ok(if stale {
            Action::requeue(Duration::from_secs(1))
        } else {
            Action::await_change()
        });
    }
    crate::namespaces::ensure(&ctx, &namespace).await?;
    let wanted = object.to_host(&ctx.scope, existing.as_ref());
    let copy = match existing {
        None => match create(&copies, &wanted).await {
            Ok(Some(copy)) => copy,
            Ok(None) => return Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => {
                crate::namespaces::forget(&ctx, &namespace);
                return Err(e);
            }
        },
        Some(copy) if copy.content() != wanted.content() => {
            let mut replaced = wanted;
            replaced.meta_mut().resource_version = copy.resource_version();
            match copies
                .replace(&name, &PostParams::default(), &replaced)
                .await
            {
                Ok(copy) => copy,
                Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
                // An immutable copy cannot change: it is made again.
                Err(kube::Error::Api(s)) if s.code == 422 => {
                    delete(&copies, &copy).await?;
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(Error::Host(e)),
            }
        }
        Some(copy) => copy,
    };
    let tenant: Api<K> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let (object_patch, status_patch) = K::back(&object, &copy, &ctx.scope.host);
    if let Some(patch) = object_patch {
        tenant
            .patch(&name, &patch_params(), &Patch::Merge(patch))
            .await
            .map_err(Error::Tenant)?;
    }
    if let Some(patch) = status_patch {
        tenant
            .patch_status(&name, &patch_params(), &Patch::Merge(patch))
            .await
            .map_err(Error::Tenant)?;
    }
    Ok(Action::requeue(PATROL))
}

/// Whether a host object of kind `K` is a copy of a tenant object of that kind (and not,
/// say, a pod's token Secret), as the kind it says it was made from (`OBJECT_KIND`) tells.
fn is_copy<K: Copied>(host: &K) -> bool {
    translate::origin(host.meta()).is_some_and(|o| o.kind.as_deref() == Some(K::KIND))
}

/// Creates a copy, with the kind's second try if the host finds the first invalid: the
/// copy, or none if one of that name appeared meanwhile.
async fn create<K: Copied>(copies: &Api<K>, wanted: &K) -> Result<Option<K>, Error> {
    let first = copies.create(&PostParams::default(), wanted).await;
    let second = match (&first, K::second_try(wanted)) {
        (Err(kube::Error::Api(s)), Some(second)) if s.code == 422 => Some(second),
        _ => None,
    };
    let result = match second {
        Some(second) => copies.create(&PostParams::default(), &second).await,
        None => first,
    };
    match result {
        Ok(copy) => Ok(Some(copy)),
        Err(e) if conflict(&e) => Ok(None),
        Err(e) => Err(Error::Host(e)),
    }
}

/// Deletes a host copy, its uid as precondition.
async fn delete<K: Copied>(copies: &Api<K>, copy: &K) -> Result<(), Error> {
    let params = DeleteParams {
        preconditions: copy.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match copies.delete(&copy.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) || conflict(&e) => Ok(()),
        Err(e) => Err(Error::Host(e)),
    }
}

/// A host copy whose tenant object is gone (or is another of that name) is deleted.
async fn collect_one<K: Copied>(copy: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(origin) = translate::origin(copy.meta())
        .filter(|_| ctx.scope.owns(copy.meta()) && is_copy::<K>(&copy))
    else {
        return Ok(Action::await_change());
    };
    let Some(namespace) = origin.namespace.as_deref() else {
        return Ok(Action::await_change());
    };
    let tenant: Api<K> = Api::namespaced(ctx.tenant.clone(), namespace);
    let live = tenant
        .get_opt(&origin.name)
        .await
        .map_err(Error::Tenant)?
        .is_some_and(|t| t.uid().as_deref() == Some(origin.uid.as_str()));
    if !live {
        let copies: Api<K> =
            Api::namespaced(ctx.host.clone(), &copy.namespace().unwrap_or_default());
        delete(&copies, &copy).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(PATROL))
}
