//! A tenant's custom resources. Its CRDs are stored like any object; the tenant's watch
//! cache of them is the source of its [`TypeSet`], rebuilt when a CRD changes, so every
//! tenant sees its own types and no other's. Writes of CRDs are checked and accepted here
//! (`NamesAccepted`, `Established`), writes of custom objects are pruned, defaulted and
//! validated against their schema. A CRD is created with the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer, through which the CRD finalizer
//! of `vcluster-controllers` deletes its objects before it goes, as upstream.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vcluster_core::crd::{self, CLEANUP_FINALIZER};
use vcluster_core::object::{self, meta_str};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::{ApiError, Reason};
use vcluster_core::structural;

use crate::objects::{Result, store_error};
use crate::tenant::{Tenant, fresh};
use crate::types::TypeSet;

/// How long a CRD write waits for the tenant's types to include it.
const SETTLE: Duration = Duration::from_secs(3);

/// Looked up once: every request reads the tenant's types through it.
static CRD_TYPE: std::sync::LazyLock<Arc<ResourceType>> = std::sync::LazyLock::new(|| {
    registry::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CRDs are built in")
});

fn crd_type() -> Arc<ResourceType> {
    CRD_TYPE.clone()
}

pub(crate) fn is_crd(rt: &ResourceType) -> bool {
    rt.gk() == ("apiextensions.k8s.io", "CustomResourceDefinition")
}

/// The tenant's types as of its latest CRDs (rebuilt only when they changed).
pub(crate) async fn types(tenant: &Tenant) -> Result<Arc<TypeSet>> {
    let rt = crd_type();
    let cache = tenant.cache(&rt, 0).await.map_err(store_error)?;
    let current = tenant.current_types();
    if current.revision == cache.revision() {
        return Ok(current);
    }
    let (crds, revision) = cache.snapshot(registry::storage_prefix(&rt, None).as_bytes());
    let mut custom = Vec::new();
    for (_, cached) in &crds {
        custom.extend(crd::served_types(&cached.object).into_iter().map(Arc::new));
    }
    let types = Arc::new(TypeSet { custom, revision });
    tenant.set_types(types.clone());
    Ok(types)
}

/// Waits until the tenant's types reflect every CRD write so far: a client that created a
/// CRD can use its resources as soon as the create is answered.
/// `revision` is the write's own: the store's current revision would also count other
/// tenants' writes, which this tenant's CRD cache never sees, and a busy neighbour would
/// then keep a CRD write from being answered.
pub(crate) async fn settle(tenant: &Tenant, revision: u64) -> Result<()> {
    let cache = tenant.cache(&crd_type(), 0).await.map_err(store_error)?;
    cache
        .wait_for(revision, SETTLE)
        .await
        .map_err(|_| ApiError::internal("the custom resource definitions did not settle"))
}

/// What a write of `rt` makes of `object` before it is stored: a CRD is checked and
/// accepted; a custom object is pruned, defaulted and validated against its schema.
pub(crate) async fn admit(
    tenant: &Tenant,
    rt: &ResourceType,
    mut object: Value,
    creating: bool,
) -> Result<Value> {
    let name = meta_str(&object, "name").unwrap_or_default().to_owned();
    if is_crd(rt) {
        let causes = crd::validate(&object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
        if creating {
            object::add_finalizer(&mut object, CLEANUP_FINALIZER);
        }
        let cache = tenant.cache(rt, 0).await.map_err(store_error)?;
        let (others, _) = cache.snapshot(registry::storage_prefix(rt, None).as_bytes());
        crd::accept(
            &mut object,
            others.iter().map(|(_, c)| &*c.object),
            &fresh().now,
        );
        return Ok(object);
    }
    let Some(custom) = &rt.custom else {
        return Ok(object);
    };
    if creating && custom.terminating {
        return Err(ApiError::new(
            405,
            Reason::MethodNotAllowed,
            format!(
                "create not allowed while custom resource definition is terminating: {}",
                rt.qualified()
            ),
        ));
    }
    if let Some(schema) = &custom.schema {
        structural::prune(schema, &mut object);
        structural::default(schema, &mut object);
        let causes = structural::validate(schema, &object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
    }
    Ok(object)
}
