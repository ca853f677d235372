//! The floor the API's reads and writes stand on: how a stored object is read and served,
//! how a storage failure is answered, who a write is made for and with which options. It
//! imports nothing of this crate but the tenant, the request's target and `stored.rs`, so the write path
//! (`write.rs`), admission (`admission.rs`) and the handlers above them all point down here.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::{ApiError, Cause, Reason};
use vcluster_store::KeyValue;

use crate::router::Target;
use crate::tenant::Tenant;
use crate::{User, stored};

pub(crate) type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Who a write is made for: a client (whose rights RBAC's escalation check weighs), or the
/// server's own background work and controllers (the system, checked by nothing).
#[derive(Clone, Copy)]
pub(crate) enum Requester<'a> {
    User(&'a User),
    System,
}

/// `fieldValidation`: what a write does with fields its type does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FieldValidation {
    /// Dropped silently (the server's own writes).
    #[default]
    Ignore,
    /// Dropped, with a `Warning` header naming each (upstream's default for a request
    /// that does not say).
    Warn,
    /// Refused, naming them (what kubectl sends).
    Strict,
}

/// The options of a create, an update or a patch (kube-rs' `PostParams`/`PatchParams`).
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteParams {
    /// `dryRun=All`: everything is checked, nothing is stored.
    pub dry_run: bool,
    /// Who the changed fields are recorded as owned by.
    pub field_manager: String,
    pub field_validation: FieldValidation,
    /// Server-side apply only: take fields other managers own.
    pub force: bool,
}

impl WriteParams {
    /// The options of the server's own writes, recorded as `manager`'s.
    pub(crate) fn manager(manager: &str) -> Self {
        Self {
            field_manager: manager.to_owned(),
            ..Self::default()
        }
    }
}

/// A delete's `propagationPolicy`: what happens to the object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// Dependents are deleted after their owner (the default).
    Background,
    /// Dependents first, then the owner (the `foregroundDeletion` finalizer).
    Foreground,
    /// Dependents are kept, their owner references removed (the `orphan` finalizer).
    Orphan,
}

/// The options of a delete (`DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteParams {
    pub dry_run: bool,
    pub propagation: Option<Propagation>,
    /// The object is deleted only if it still has this uid ...
    pub uid: Option<String>,
    /// ... and this resourceVersion.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`: how long a pod being deleted is given to stop (its own
    /// `terminationGracePeriodSeconds` when not given).
    pub grace_period: Option<i64>,
}

impl DeleteParams {
    /// From a `DeleteOptions` object, as clients send it in a body (or as the eviction
    /// subresource carries it).
    pub(crate) fn from_options(options: &Value) -> Result<Self> {
        let propagation = match options["propagationPolicy"].as_str() {
            Some("Foreground") => Some(Propagation::Foreground),
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            None | Some("") if options["orphanDependents"] == true => Some(Propagation::Orphan),
            None | Some("") => None,
            Some(other) => {
                let supported = ["Foreground", "Background", "Orphan", "nil"];
                let cause = Cause::not_supported("propagationPolicy", other, &supported);
                return Err(ApiError::invalid_kind(
                    "meta.k8s.io",
                    "DeleteOptions",
                    "",
                    vec![cause],
                ));
            }
        };
        let text = |pointer: &str| {
            options
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Self {
            dry_run: options["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All")),
            propagation,
            uid: text("/preconditions/uid"),
            resource_version: text("/preconditions/resourceVersion"),
            grace_period: options["gracePeriodSeconds"].as_i64(),
        })
    }
}

/// A storage failure as the API answers it: a compacted revision is 410 `Expired`, a
/// future one 504, anything else 500 (its cause kept for the log, not the client).
pub(crate) fn store_error(e: vcluster_store::Error) -> ApiError {
    match e {
        vcluster_store::Error::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        // Read from the store, as upstream's etcd3 storage answers it: no retry advice.
        vcluster_store::Error::FutureRevision { requested, current } => {
            too_large_resource_version(requested, current, 0)
        }
        // What kube-apiserver answers a body over its limit (etcd's own refusal of a large
        // object is a 500 there; a client's oversized object is its error here).
        vcluster_store::Error::TooLarge { limit } => ApiError::new(
            413,
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {limit}"),
        ),
        e => ApiError::internal("storage error").caused_by(e),
    }
}

/// 504 for a read at a revision the server has not reached, as upstream words it: the
/// `ResourceVersionTooLarge` cause is what client-go's reflector recognizes it by (it then
/// re-lists from the latest state), and `retry_after` seconds (0: none) become the Status's
/// `retryAfterSeconds` and the `Retry-After` header.
pub(crate) fn too_large_resource_version(
    requested: u64,
    current: u64,
    retry_after: u32,
) -> ApiError {
    let mut details = json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
    });
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError {
        details: Some(details),
        ..ApiError::new(
            504,
            Reason::Timeout,
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        )
    }
}

/// A stored object as served; a 500 naming its key if it cannot be read (which a DELETE
/// of it still removes).
pub(crate) fn served(kv: &KeyValue) -> Result<Value> {
    stored::decode(kv).map_err(|e| {
        let key = String::from_utf8_lossy(&kv.key);
        ApiError::internal(format!(
            "Internal error occurred: corrupt object: the stored object {key} cannot be \
             read: {e}"
        ))
        .caused_by(e)
    })
}

/// An object as stored: without its resourceVersion, which is the store's revision; a 400
/// if it nests deeper than a stored object may be read back (see `stored.rs`).
pub(crate) fn encode(object: &Value) -> Result<Bytes> {
    let mut stored = object.clone();
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if stored::too_deep(&stored) {
        return Err(ApiError::bad_request(format!(
            "the object nests arrays and objects more than {} levels deep (counting its \
             managedFields), deeper than a stored object can be read back: exceeded max depth",
            stored::MAX_DEPTH
        )));
    }
    Ok(Bytes::from(
        serde_json::to_vec(&stored).expect("a JSON value serializes"),
    ))
}

/// The storage key of the object `name` of the target's resource and namespace.
pub(crate) fn key(target: &Target, name: &str) -> Bytes {
    Bytes::from(registry::storage_key(
        &target.rt,
        target.namespace.as_deref(),
        name,
    ))
}

/// The stored object `name` of the target and the store's record of it.
pub(crate) async fn read(
    tenant: &Tenant,
    target: &Target,
    name: &str,
) -> Result<(KeyValue, Value)> {
    let kv = tenant
        .store
        .get(&key(target, name))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(&target.rt, name))?;
    let object = served(&kv)?;
    Ok((kv, object))
}

/// The object a named target names.
pub(crate) async fn get(tenant: &Tenant, target: &Target) -> Result<Value> {
    let name = target.name.as_deref().expect("a named target");
    Ok(read(tenant, target, name).await?.1)
}

/// The current object at `key` (of `rt`): from the resource's watch cache, or from the
/// store where the cache does not hold it (yet) — like upstream's admission plugins, which
/// read informers and look up live only what they miss. No store read in the common case.
pub(crate) async fn current(
    tenant: &Tenant,
    rt: &ResourceType,
    key: &[u8],
) -> Result<Option<Arc<Value>>> {
    if let Some(found) = tenant.cache(rt, 0).await.map_err(store_error)?.get(key) {
        return Ok(Some(found));
    }
    match tenant.store.get(key).await.map_err(store_error)? {
        Some(kv) => Ok(Some(Arc::new(served(&kv)?))),
        None => Ok(None),
    }
}

/// Seconds since the Unix epoch, for ages in Tables.
pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_read_as_upstream_reads_them() {
        let params = DeleteParams::from_options(&json!({
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
            "preconditions": {"uid": "u1", "resourceVersion": "7"},
        }))
        .expect("valid");
        assert_eq!(params.propagation, Some(Propagation::Foreground));
        assert!(params.dry_run);
        assert_eq!(params.uid.as_deref(), Some("u1"));
        assert_eq!(params.resource_version.as_deref(), Some("7"));
        let orphan = DeleteParams::from_options(&json!({"orphanDependents": true})).expect("valid");
        assert_eq!(orphan.propagation, Some(Propagation::Orphan));
        let plain = DeleteParams::from_options(&json!({})).expect("valid");
        assert_eq!(plain.propagation, None);
        assert!(!plain.dry_run);
        let bad = DeleteParams::from_options(&json!({"propagationPolicy": "Sideways"}))
            .expect_err("refused");
        assert!(bad.is(Reason::Invalid));
        assert_eq!(
            bad.message,
            r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil""#
        );
    }

    #[test]
    fn storage_failures_keep_their_cause_for_the_log_only() {
        let e = store_error(vcluster_store::Error::Compacted {
            requested: 3,
            compacted: 9,
        });
        assert!(e.is(Reason::Expired));
        assert_eq!(e.message, "too old resource version: 3 (9)");
        let e = store_error(vcluster_store::Error::InvalidArgument(
            "disk on fire".into(),
        ));
        assert!(e.is(Reason::InternalError));
        assert!(!e.message.contains("disk on fire"), "{}", e.message);
        let cause = std::error::Error::source(&e).expect("the cause is kept");
        assert!(cause.to_string().contains("disk on fire"));
    }
}
