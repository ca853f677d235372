//! The admission plugins of a create, as a list run in upstream's order (kube-apiserver's
//! `AllOrderedPlugins`, of which these are the ones a cluster without webhooks needs):
//! NamespaceLifecycle (new content only in a namespace that exists and is not being
//! deleted), LimitRanger (a pod's default requests and limits from the namespace's
//! LimitRanges, and their bounds), ServiceAccount (the pod's account must exist; its token
//! is mounted, `vcluster_core::serviceaccount`), PodSecurity (the namespace's
//! `pod-security.kubernetes.io/enforce` level), ResourceQuota (a create that would take a
//! quota of the namespace past its `hard` is refused). Each plugin says which resources it
//! applies to; each refusal is upstream's 403. The rules themselves are pure functions in
//! `vcluster-core`; this is the shell that reads what they need.
//!
//! LimitRanges and quotas are read from the store (a namespace rarely has any; watch caches
//! of them would cost every idle tenant), the namespace from its watch cache; what a quota
//! has used is counted from the store, under the tenant's allocation lock that the write
//! path holds until the object is stored, so that two creates cannot both take the last of
//! a quota.

use std::sync::Arc;

use serde_json::Value;
use vcluster_core::object::{self, meta_str};
use vcluster_core::podsecurity::{self, Level};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::ApiError;
use vcluster_core::{limitrange, quota, serviceaccount};
use vcluster_store::RangeRequest;

use crate::objects::{Result, current, store_error};
use crate::stored;
use crate::tenant::{Tenant, fresh};

/// One admission plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plugin {
    NamespaceLifecycle,
    LimitRanger,
    ServiceAccount,
    PodSecurity,
    ResourceQuota,
}

/// The plugins, in the order upstream runs them.
pub(crate) const PLUGINS: [Plugin; 5] = [
    Plugin::NamespaceLifecycle,
    Plugin::LimitRanger,
    Plugin::ServiceAccount,
    Plugin::PodSecurity,
    Plugin::ResourceQuota,
];

impl Plugin {
    /// Whether the plugin looks at creates of `rt`.
    pub(crate) fn applies_to(self, rt: &ResourceType) -> bool {
        match self {
            Self::NamespaceLifecycle | Self::ResourceQuota => rt.namespaced,
            Self::LimitRanger | Self::ServiceAccount | Self::PodSecurity => is_pod(rt),
        }
    }
}

/// The admission of one create: what the plugins need read once (the namespace is open,
/// its quotas), then [`Create::admit`] for each attempt at storing the object.
pub(crate) struct Create<'a> {
    tenant: &'a Tenant,
    rt: &'a ResourceType,
    namespace: Option<&'a str>,
    plugins: Vec<Plugin>,
    quotas: Vec<Arc<Value>>,
}

impl<'a> Create<'a> {
    /// Starts the admission of a create of `rt` named `name` (empty for a generated name)
    /// in `namespace`. NamespaceLifecycle answers here, before anything is prepared, as it
    /// does upstream before a name is generated.
    pub(crate) async fn start(
        tenant: &'a Tenant,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
        name: &str,
    ) -> Result<Self> {
        let plugins: Vec<Plugin> = PLUGINS.into_iter().filter(|p| p.applies_to(rt)).collect();
        let mut quotas = Vec::new();
        if let Some(ns) = namespace {
            if plugins.contains(&Plugin::NamespaceLifecycle) {
                namespace_open(tenant, rt, ns, name).await?;
            }
            if plugins.contains(&Plugin::ResourceQuota) {
                quotas = stored(tenant, "resourcequotas", ns).await?;
            }
        }
        Ok(Self {
            tenant,
            rt,
            namespace,
            plugins,
            quotas,
        })
    }

    /// Whether the create must hold the tenant's allocation lock until it is stored: a
    /// quota counts what is stored, so two creates must not both count the same room.
    pub(crate) fn counts_quota(&self) -> bool {
        !self.quotas.is_empty()
    }

    /// Runs the plugins that apply, in order, on the object about to be stored.
    pub(crate) async fn admit(&self, mut object: Value) -> Result<Value> {
        let Some(namespace) = self.namespace else {
            return Ok(object);
        };
        let (tenant, rt) = (self.tenant, self.rt);
        for plugin in &self.plugins {
            match plugin {
                Plugin::NamespaceLifecycle => {}
                Plugin::LimitRanger => limit_ranger(tenant, rt, namespace, &mut object).await?,
                Plugin::ServiceAccount => {
                    service_account(tenant, rt, namespace, &mut object).await?;
                }
                Plugin::PodSecurity => pod_security(tenant, rt, namespace, &object).await?,
                Plugin::ResourceQuota => {
                    check_quotas(tenant, rt, namespace, &object, &self.quotas).await?;
                }
            }
        }
        Ok(object)
    }
}

/// New content may go into `namespace`: it exists and is not being deleted.
async fn namespace_open(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let namespaces = builtin("namespaces");
    let key = registry::storage_key(&namespaces, None, namespace);
    let Some(found) = current(tenant, &namespaces, key.as_bytes()).await? else {
        return Err(ApiError::not_found(&namespaces, namespace));
    };
    if object::is_deleting(&found) {
        return Err(ApiError::forbidden(
            rt,
            name,
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

fn builtin(plural: &str) -> Arc<ResourceType> {
    registry::find("", "v1", plural).expect("built in")
}

/// The objects of a built-in core resource in `namespace`, read from the store: usually
/// none, and a watch cache for them in every tenant would cost each idle tenant a watch.
async fn stored(tenant: &Tenant, plural: &str, namespace: &str) -> Result<Vec<Arc<Value>>> {
    let rt = builtin(plural);
    let page = tenant
        .store
        .range(RangeRequest::prefix(registry::storage_prefix(
            &rt,
            Some(namespace),
        )))
        .await
        .map_err(store_error)?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| stored::readable(kv).map(Arc::new))
        .collect())
}

pub(crate) fn is_pod(rt: &ResourceType) -> bool {
    rt.gk() == ("", "Pod")
}

fn name_of(object: &Value) -> String {
    meta_str(object, "name").unwrap_or_default().to_owned()
}

/// LimitRanger: the namespace's LimitRanges' defaults, then their bounds.
async fn limit_ranger(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    pod: &mut Value,
) -> Result<()> {
    let ranges: Vec<Value> = stored(tenant, "limitranges", namespace)
        .await?
        .iter()
        .map(|r| (**r).clone())
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let broken = limitrange::apply(&ranges, pod);
    if broken.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        rt,
        &name_of(pod),
        &format!("[{}]", broken.join(", ")),
    ))
}

/// ServiceAccount: the pod runs as an account that exists, whose token it mounts.
async fn service_account(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    pod: &mut Value,
) -> Result<()> {
    if !serviceaccount::applies_to(pod) {
        return Ok(());
    }
    let account_name = serviceaccount::account(pod);
    let Some(account) = find_account(tenant, namespace, &account_name).await? else {
        return Err(ApiError::forbidden(
            rt,
            &name_of(pod),
            &format!(
                "error looking up service account {namespace}/{account_name}: serviceaccount \"{account_name}\" not found"
            ),
        ));
    };
    serviceaccount::admit(pod, &account, &fresh().suffix);
    Ok(())
}

/// PodSecurity: the pod meets its namespace's enforced level.
async fn pod_security(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    pod: &Value,
) -> Result<()> {
    let namespaces = builtin("namespaces");
    let key = registry::storage_key(&namespaces, None, namespace);
    let Some(ns) = current(tenant, &namespaces, key.as_bytes()).await? else {
        return Ok(());
    };
    let level = Level::of_namespace(&ns);
    let violations = podsecurity::violations(level, pod);
    if violations.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        rt,
        &name_of(pod),
        &podsecurity::message(level, &violations),
    ))
}

/// The ServiceAccount `name` of `namespace`. The `default` account is made by the
/// namespace controller just after its namespace, so a pod created at once may come
/// before it: as upstream, that one is looked for a few times before the pod is refused.
async fn find_account(tenant: &Tenant, namespace: &str, name: &str) -> Result<Option<Arc<Value>>> {
    let accounts = builtin("serviceaccounts");
    let key = registry::storage_key(&accounts, Some(namespace), name);
    let attempts = if name == serviceaccount::DEFAULT_ACCOUNT {
        10
    } else {
        1
    };
    for attempt in 1..=attempts {
        if let Some(found) = current(tenant, &accounts, key.as_bytes()).await? {
            return Ok(Some(found));
        }
        if attempt < attempts {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(None)
}

/// ResourceQuota: refuses `object` if it would take one of `quotas` past its `hard`.
async fn check_quotas(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    object: &Value,
    quotas: &[Arc<Value>],
) -> Result<()> {
    for q in quotas {
        let (mut requested, mut used, mut limited) = (Vec::new(), Vec::new(), Vec::new());
        for (resource, hard) in q
            .pointer("/spec/hard")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some((group, plural)) = quota::counted(resource) else {
                continue;
            };
            if (group, plural) != (rt.group.as_str(), rt.plural.as_str()) {
                continue;
            }
            let asked = quota::amount(resource, object);
            let Some(hard) = vcluster_core::quantity::milli_of(hard) else {
                continue;
            };
            if asked == 0 {
                continue;
            }
            let taken = usage(tenant, rt, namespace, resource).await?;
            if taken + asked > hard {
                requested.push(format!("{resource}={}", quota::show(resource, asked)));
                used.push(format!("{resource}={}", quota::show(resource, taken)));
                limited.push(format!("{resource}={}", quota::show(resource, hard)));
            }
        }
        if !requested.is_empty() {
            let name = meta_str(object, "name").unwrap_or_default();
            return Err(ApiError::forbidden(
                rt,
                name,
                &format!(
                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                    meta_str(q, "name").unwrap_or_default(),
                    requested.join(","),
                    used.join(","),
                    limited.join(",")
                ),
            ));
        }
    }
    Ok(())
}

/// What the objects of `rt` in `namespace` use of `resource` now, read from the store.
async fn usage(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    resource: &str,
) -> Result<i128> {
    let page = tenant
        .store
        .range(RangeRequest::prefix(registry::storage_prefix(
            rt,
            Some(namespace),
        )))
        .await
        .map_err(store_error)?;
    let objects: Vec<Value> = page.kvs.iter().filter_map(stored::readable).collect();
    Ok(quota::usage(resource, &objects))
}
