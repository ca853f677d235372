//! A tenant's custom resources. Its CRDs are stored like any object; the tenant's watch
//! cache of them is the source of its [`TypeSet`], rebuilt when a CRD changes, so every
//! tenant sees its own types and no other's. Writes of CRDs are checked and accepted here
//! (`NamesAccepted`, `Established`), writes of custom objects are pruned, defaulted and
//! validated against their schema, and a deleted CRD's objects are deleted before the CRD
//! goes (the `customresourcecleanup.apiextensions.k8s.io` finalizer, as upstream).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::crd::{self, CLEANUP_FINALIZER};
use vcluster_core::object::{self, UpdateScope, meta_str};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::ApiError;
use vcluster_core::structural;

use crate::resources::{self, Result, store_error};
use crate::router::Target;
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

/// The tenant's types as of its latest CRDs (rebuilt only when they changed); starts the
/// cleanup of CRDs being deleted.
pub(crate) async fn types(tenant: &Arc<Tenant>) -> Result<Arc<TypeSet>> {
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
        let holds = cached
            .object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
        if object::is_deleting(&cached.object) && holds {
            start_cleanup(tenant, &cached.object);
        }
    }
    let types = Arc::new(TypeSet { custom, revision });
    tenant.set_types(types.clone());
    Ok(types)
}

/// Waits until the tenant's types reflect every CRD write so far: a client that created a
/// CRD can use its resources as soon as the create is answered.
pub(crate) async fn settle(tenant: &Tenant) -> Result<()> {
    let revision = tenant.store.current_revision().await.map_err(store_error)?;
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
            "MethodNotAllowed",
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

/// The type a CRD's objects are stored as, whether or not it is served: for deleting them.
fn stored_type(crd: &Value) -> ResourceType {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    ResourceType {
        group: s("/spec/group").to_owned(),
        version: crd::storage_version(crd).to_owned(),
        kind: s("/spec/names/kind").to_owned(),
        plural: s("/spec/names/plural").to_owned(),
        singular: s("/spec/names/singular").to_owned(),
        namespaced: s("/spec/scope") == "Namespaced",
        short_names: Vec::new(),
        categories: Vec::new(),
        verbs: registry::CRUD,
        subresources: Vec::new(),
        custom: None,
    }
}

/// Deletes a terminating CRD's objects (through the API's own delete, so their finalizers
/// hold them as usual), then removes the cleanup finalizer so the CRD goes. Runs once per
/// CRD at a time; a restart picks it up again when the types are next read.
fn start_cleanup(tenant: &Arc<Tenant>, crd: &Value) {
    let name = meta_str(crd, "name").unwrap_or_default().to_owned();
    if !tenant.start_cleanup(&name) {
        return;
    }
    let rt = Arc::new(stored_type(crd));
    let tenant = tenant.clone();
    tokio::spawn(async move {
        let result = cleanup(&tenant, rt, &name).await;
        if let Err(e) = &result {
            tracing::warn!(tenant = %tenant.name, crd = %name, error = %e, "CRD cleanup failed; retried on the next read of the types");
        }
        tenant.end_cleanup(&name);
    });
}

async fn cleanup(tenant: &Tenant, rt: Arc<ResourceType>, name: &str) -> Result<()> {
    let prefix = registry::storage_prefix(&rt, None);
    while resources::delete_all(tenant, &rt, &prefix).await?.found > 0 {
        // Objects held by finalizers of their own: wait for them.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let target = Target {
        rt: crd_type(),
        namespace: None,
        name: Some(name.to_owned()),
        subresource: None,
    };
    resources::release(
        tenant,
        &target,
        UpdateScope::Main,
        "/metadata/finalizers",
        CLEANUP_FINALIZER,
        "apiextensions-controller",
    )
    .await
}

/// `object` as served at `rt`'s version: the versions of a CRD share their objects
/// (conversion `None`), which differ only in `apiVersion`.
pub(crate) fn in_version(rt: &ResourceType, mut object: Value) -> Value {
    if rt.custom.is_some() {
        let served = rt.api_version();
        if object["apiVersion"] != served.as_str() {
            object["apiVersion"] = json!(served);
        }
    }
    object
}
