//! ConfigMaps and Secrets go down only while a pod of their namespace names them (the
//! design note's "used only"; `translate::References`): a tenant one is copied to the host
//! namespace when a pod starts to use it, kept equal to it while used, and its copy deleted
//! when no pod uses it any more or it is gone from the tenant. The same two controllers for
//! both kinds ([`Config`]): [`run`] with the tenant objects as the primary (pod changes map
//! to the objects they name), and a collector with the host copies as the primary (tenant
//! object changes map to their copies), for the tenant objects that are gone.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::translate::{self, References, Scope};
use crate::{Ctx, Error, conflict, not_found};

/// How often a copy is compared with its tenant object with nothing changed.
const PATROL: Duration = Duration::from_secs(300);

/// A kind that goes down beside the pods that use it.
pub(crate) trait Config:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Its host copy.
    fn to_host(&self, scope: &Scope) -> Self;
    /// The objects of this kind a pod names.
    fn named(refs: References) -> std::collections::BTreeSet<String>;
    /// What a copy must equal its tenant object's copy in (metadata other than the
    /// markers' and the content), as JSON.
    fn content(&self) -> serde_json::Value;
}

impl Config for ConfigMap {
    fn to_host(&self, scope: &Scope) -> Self {
        scope.config_map_to_host(self)
    }
    fn named(refs: References) -> std::collections::BTreeSet<String> {
        refs.config_maps
    }
    fn content(&self) -> serde_json::Value {
        serde_json::json!([
            self.metadata.labels,
            self.metadata.annotations,
            self.data,
            self.binary_data,
            self.immutable
        ])
    }
}

impl Config for Secret {
    fn to_host(&self, scope: &Scope) -> Self {
        scope.secret_to_host(self)
    }
    fn named(refs: References) -> std::collections::BTreeSet<String> {
        refs.secrets
    }
    fn content(&self) -> serde_json::Value {
        serde_json::json!([
            self.metadata.labels,
            self.metadata.annotations,
            self.data,
            self.type_,
            self.immutable
        ])
    }
}

/// What a pod names of kind `K`, as it goes down (after the translation drops what the
/// host must not get, such as the tenant's token volume and its `kube-root-ca.crt`).
fn named_by<K: Config>(scope: &Scope, pod: &Pod) -> std::collections::BTreeSet<String> {
    let host = scope.pod_to_host(pod);
    host.spec
        .as_ref()
        .map(|spec| K::named(References::of(spec)))
        .unwrap_or_default()
}

/// Both controllers of kind `K` for one tenant on one host.
pub(crate) async fn run<K: Config>(ctx: Arc<Ctx>) {
    let scope = ctx.scope.clone();
    let down = Controller::new(
        Api::<K>::all(ctx.tenant.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Pod>::all(ctx.tenant.clone()),
        watcher::Config::default(),
        move |pod: Pod| {
            let namespace = pod.namespace().unwrap_or_default();
            named_by::<K>(&scope, &pod)
                .into_iter()
                .map(move |name| ObjectRef::new(&name).within(&namespace))
        },
    )
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
        crate::drive(down, "config reconcile"),
        crate::drive(collect, "config copy check"),
    );
}

fn retry<K>(_object: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(tenant = %ctx.scope.tenant, error = %crate::chain(error), "syncer: a ConfigMap or Secret could not be synced; trying again");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile<K: Config>(object: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (object.namespace(), object.uid()) else {
        return Ok(Action::await_change());
    };
    let name = object.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let used = object.meta().deletion_timestamp.is_none()
        && pods
            .list(&ListParams::default())
            .await
            .map_err(Error::Tenant)?
            .items
            .iter()
            .any(|pod| named_by::<K>(&ctx.scope, pod).contains(&name));
    let host_namespace = ctx.scope.host_namespace(&namespace);
    let copies: Api<K> = Api::namespaced(ctx.host.clone(), &host_namespace);
    let existing = if used
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
        && !ctx.scope.owns(copy.meta())
    {
        return Err(Error::NotOurs(format!("{host_namespace}/{name}")));
    }
    let stale = existing
        .as_ref()
        .is_some_and(|c| translate::origin(c.meta()).is_none_or(|o| o.uid != uid));
    if !used || stale {
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
    let wanted = object.to_host(&ctx.scope);
    match existing {
        None => match copies.create(&PostParams::default(), &wanted).await {
            Ok(_) => {}
            Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => {
                crate::namespaces::forget(&ctx, &namespace);
                return Err(Error::Host(e));
            }
        },
        Some(copy) if copy.content() != wanted.content() => {
            let mut replaced = wanted;
            replaced.meta_mut().resource_version = copy.resource_version();
            match copies
                .replace(&name, &PostParams::default(), &replaced)
                .await
            {
                Ok(_) => {}
                Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_secs(1))),
                // An immutable copy cannot change: it is made again.
                Err(kube::Error::Api(s)) if s.code == 422 => {
                    delete(&copies, &copy).await?;
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(Error::Host(e)),
            }
        }
        Some(_) => {}
    }
    Ok(Action::requeue(PATROL))
}

/// Deletes a host copy, its uid as precondition.
async fn delete<K: Config>(copies: &Api<K>, copy: &K) -> Result<(), Error> {
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
async fn collect_one<K: Config>(copy: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(origin) = translate::origin(copy.meta()).filter(|_| ctx.scope.owns(copy.meta()))
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
