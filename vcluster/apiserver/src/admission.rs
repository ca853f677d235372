//! The admission plugins of a create that read other objects of the namespace, in
//! upstream's order: LimitRanger (a pod's default requests and limits from the namespace's
//! LimitRanges, and their bounds), ServiceAccount (the pod's account must exist; its token
//! is mounted, `vcluster_core::serviceaccount`), PodSecurity (the namespace's
//! `pod-security.kubernetes.io/enforce` level), ResourceQuota (a create that would take a
//! quota of the namespace past its `hard` is refused). Each refusal is upstream's 403.
//!
//! LimitRanges and quotas are read from the store (a namespace rarely has any; watch caches
//! of them would cost every idle tenant), the namespace from its watch cache; what a quota
//! has used is counted from the store, under the tenant's allocation lock that
//! `resources::create` holds until the object is stored, so that two creates cannot both
//! take the last of a quota.

use std::sync::Arc;

use serde_json::Value;
use vcluster_core::object::meta_str;
use vcluster_core::podsecurity::{self, Level};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::ApiError;
use vcluster_core::{limitrange, quota, serviceaccount};
use vcluster_store::RangeRequest;

use crate::resources::{Result, current, store_error};
use crate::tenant::{Tenant, fresh};

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
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok().map(Arc::new))
        .collect())
}

/// The ResourceQuotas of `namespace`.
pub(crate) async fn quotas(tenant: &Tenant, namespace: &str) -> Result<Vec<Arc<Value>>> {
    stored(tenant, "resourcequotas", namespace).await
}

fn is_pod(rt: &ResourceType) -> bool {
    rt.gk() == ("", "Pod")
}

/// LimitRanger and PodSecurity for a pod being created in `namespace`.
pub(crate) async fn pod(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    mut pod: Value,
) -> Result<Value> {
    if !is_pod(rt) {
        return Ok(pod);
    }
    let name = meta_str(&pod, "name").unwrap_or_default().to_owned();
    let ranges: Vec<Value> = stored(tenant, "limitranges", namespace)
        .await?
        .iter()
        .map(|r| (**r).clone())
        .collect();
    if !ranges.is_empty() {
        let broken = limitrange::apply(&ranges, &mut pod);
        if !broken.is_empty() {
            return Err(ApiError::forbidden(
                rt,
                &name,
                &format!("[{}]", broken.join(", ")),
            ));
        }
    }
    if serviceaccount::applies_to(&pod) {
        let account_name = serviceaccount::account(&mut pod);
        let Some(account) = service_account(tenant, namespace, &account_name).await? else {
            return Err(ApiError::forbidden(
                rt,
                &name,
                &format!(
                    "error looking up service account {namespace}/{account_name}: serviceaccount \"{account_name}\" not found"
                ),
            ));
        };
        serviceaccount::admit(&mut pod, &account, &fresh().suffix);
    }
    let namespaces = builtin("namespaces");
    let key = registry::storage_key(&namespaces, None, namespace);
    if let Some(ns) = current(tenant, &namespaces, key.as_bytes()).await? {
        let level = Level::of_namespace(&ns);
        let violations = podsecurity::violations(level, &pod);
        if !violations.is_empty() {
            return Err(ApiError::forbidden(
                rt,
                &name,
                &podsecurity::message(level, &violations),
            ));
        }
    }
    Ok(pod)
}

/// The ServiceAccount `name` of `namespace`. The `default` account is made by the
/// namespace controller just after its namespace, so a pod created at once may come
/// before it: as upstream, that one is looked for a few times before the pod is refused.
async fn service_account(
    tenant: &Tenant,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<Value>>> {
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

/// Refuses `object` if it would take one of `quotas` past its `hard`.
pub(crate) async fn check_quotas(
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
    let objects: Vec<Value> = page
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    Ok(quota::usage(resource, &objects))
}
