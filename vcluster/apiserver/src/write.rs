//! The write path: create, update, patch (merge, JSON, strategic, server-side apply) and
//! delete of one object, for a client's request and for the server's own work alike.
//!
//! Every write is a compare-and-swap on the revision the object was read at, retried when
//! the client sent no resourceVersion (an unconditional update) and refused with 409 when
//! it did. Before it is stored an object goes through what upstream's registry strategies
//! and admission do: metadata rules (`vcluster_core::object`), the CRD and custom-object
//! strategy (`crds::admit`), RBAC's escalation check for the requester, a Service's
//! addresses, then the admission plugins (`admission.rs`) in upstream's order.

use serde_json::{Value, json};
use vcluster_core::apply;
use vcluster_core::deletion::{self, Deletion};
use vcluster_core::object::{self, UpdateScope, meta_str, with_resource_version};
use vcluster_core::protobuf;
use vcluster_core::registry::ResourceType;
use vcluster_core::status::{ApiError, Cause, Reason};
use vcluster_store::KeyValue;

use crate::http::APPLY;
use crate::objects::{
    DeleteParams, FieldValidation, Propagation, Requester, Result, WriteParams, encode, key, read,
    store_error,
};
use crate::router::Target;
use crate::tenant::{Tenant, fresh};
use crate::{admission, authz, crds, services, stored};

/// How often a write retries after losing a compare-and-swap it may retry.
const RETRIES: usize = 16;

/// The namespaces upstream's `NamespaceLifecycle` admission never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// What the type's registry strategy checks of every object written: a CRD's or custom
/// object's (see `crds::admit`), and RBAC's escalation check for the requester.
async fn strategy(
    tenant: &Tenant,
    who: Requester<'_>,
    rt: &ResourceType,
    object: Value,
    creating: bool,
) -> Result<Value> {
    let object = crds::admit(tenant, rt, object, creating).await?;
    if let Requester::User(user) = who {
        authz::check_grant(tenant, user, rt, &object).await?;
    }
    Ok(object)
}

/// What a create, update or patch wrote, and the warnings its client is sent.
#[derive(Debug)]
pub(crate) struct Written {
    pub object: Value,
    /// `unknown field "spec.x"` for each field dropped under `fieldValidation=Warn`.
    pub warnings: Vec<String>,
}

/// Where the object a write decodes came from: upstream refuses a request body it cannot
/// decode with 400, and the result of a patch with 422 (`patch: Invalid value: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Body,
    Patch,
}

/// Decodes a built-in object as kube-apiserver's decoder does before anything else looks
/// at it: an `apiVersion` or `kind` left out is the endpoint's, another kind or version is
/// refused, a value of the wrong type is refused in Go's words with its field path, and
/// fields the type does not have are dropped, then warned about or refused as
/// `fieldValidation` says. Custom resources are checked against their schema instead
/// (`crds::admit`). Returns the warnings.
fn decode(
    rt: &ResourceType,
    params: &WriteParams,
    object: &mut Value,
    from: Source,
) -> Result<Vec<String>> {
    if rt.custom.is_some() || !object.is_object() {
        return Ok(Vec::new());
    }
    let expected = rt.api_version();
    let named = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let api_version = named("apiVersion").unwrap_or_else(|| expected.clone());
    let kind = named("kind").unwrap_or_else(|| rt.kind.clone());
    let patched = (from == Source::Patch).then(|| object.to_string());
    let refuse = |detail: String| {
        tracing::info!(kind = %rt.kind, error = %detail, "refused an object that does not decode");
        match &patched {
            None => {
                let version = api_version.rsplit('/').next().unwrap_or_default();
                ApiError::bad_request(format!(
                    "{kind} in version {version:?} cannot be handled as a {}: {detail}",
                    rt.kind
                ))
            }
            Some(patched) => {
                ApiError::invalid_kind("", "", "", vec![Cause::invalid("patch", patched, &detail)])
            }
        }
    };
    if kind != rt.kind {
        return Err(refuse(protobuf::foreign_kind(
            &api_version,
            &kind,
            &expected,
            &rt.kind,
        )));
    }
    let decoded = match protobuf::decode_typed(object, &expected, &rt.kind) {
        None => return Ok(Vec::new()),
        Some(Err(detail)) => return Err(refuse(detail)),
        Some(Ok(decoded)) => decoded,
    };
    if api_version != expected {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )));
    }
    let unknown = decoded
        .unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"));
    match params.field_validation {
        FieldValidation::Strict if !decoded.unknown.is_empty() => {
            let detail = format!(
                "strict decoding error: {}",
                unknown.collect::<Vec<_>>().join(", ")
            );
            Err(refuse(detail))
        }
        FieldValidation::Warn => Ok(unknown.collect()),
        _ => Ok(Vec::new()),
    }
}

/// Records the field manager as the owner of what a write changed (not for applies, which
/// set `managedFields` themselves).
fn record(rt: &ResourceType, old: Option<&Value>, new: &mut Value, params: &WriteParams) {
    let schema = rt.custom.as_ref().and_then(|c| c.schema.as_ref());
    let shape = apply::Shape::of(&rt.api_version(), &rt.kind, schema);
    apply::record_update(old, new, shape, manager(params), &fresh().now);
}

fn manager(params: &WriteParams) -> &str {
    if params.field_manager.is_empty() {
        "unknown"
    } else {
        &params.field_manager
    }
}

/// Creates the object `body` in the target's collection (and namespace).
pub(crate) async fn create(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    mut body: Value,
    params: &WriteParams,
) -> Result<Written> {
    let rt = &target.rt;
    let namespace = target.namespace.as_deref();
    let warnings = decode(rt, params, &mut body, Source::Body)?;
    let requested_name = meta_str(&body, "name").unwrap_or_default();
    let admission = admission::Create::start(tenant, rt, namespace, requested_name).await?;
    let generated = requested_name.is_empty();
    // Held until the object is stored, so that no other create takes its addresses or the
    // rest of its namespace's quota.
    let _allocating = match services::is_service(rt) || admission.counts_quota() {
        true => Some(tenant.allocating.lock().await),
        false => None,
    };
    for _ in 0..RETRIES {
        let object = object::prepare_create(rt, body.clone(), namespace, &fresh())?;
        let mut object = strategy(tenant, who, rt, object, true).await?;
        if services::is_service(rt) {
            object = services::allocate(tenant, rt, object).await?;
        }
        let mut object = admission.admit(object).await?;
        if object.pointer("/metadata/managedFields").is_none() {
            record(rt, None, &mut object, params);
        }
        let name = meta_str(&object, "name")
            .expect("prepared objects are named")
            .to_owned();
        let key = key(target, &name);
        let value = encode(&object)?;
        if params.dry_run {
            if tenant.store.get(&key).await.map_err(store_error)?.is_some() {
                return Err(ApiError::already_exists(rt, &name));
            }
            return Ok(Written { object, warnings });
        }
        let lease = tenant.lease_for(rt).await.map_err(store_error)?;
        match tenant.store.create(key, value, lease).await {
            Ok(kv) => {
                let object = with_resource_version(object, kv.mod_revision);
                return Ok(Written { object, warnings });
            }
            // A generated name that collided: draw another.
            Err(vcluster_store::Error::AlreadyExists { .. }) if generated => continue,
            Err(vcluster_store::Error::AlreadyExists { .. }) => {
                return Err(ApiError::already_exists(rt, &name));
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::new(
        500,
        Reason::AlreadyExists,
        "no free generated name was found",
    ))
}

/// How an update is made: which part of the object it may change, and whether it is
/// conditional on the resourceVersion the client sent (a lost race is then a 409; without
/// one, the change is applied again to the newer object).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Update {
    pub scope: UpdateScope,
    pub conditional: bool,
}

impl Update {
    /// An unconditional update of `scope`.
    pub(crate) fn of(scope: UpdateScope) -> Self {
        Self {
            scope,
            conditional: false,
        }
    }
}

/// How an update's new object was made: what its decoding errors are answered with (see
/// [`Source`]), and whether the field manager's ownership of what it changed is recorded
/// or the `managedFields` the change set are kept (server-side apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Sent whole (PUT), or made by the server.
    Replaced,
    /// A merge, JSON or strategic merge patch applied.
    Patched,
    /// A server-side apply.
    Applied,
}

impl Change {
    fn source(self) -> Source {
        match self {
            Self::Replaced => Source::Body,
            Self::Patched | Self::Applied => Source::Patch,
        }
    }
}

/// Reads, changes (with `change`, given the object as served) and writes back one object.
pub(crate) async fn update(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    how: Update,
    params: &WriteParams,
    change: impl Fn(&Value) -> Result<Value>,
) -> Result<Written> {
    update_owned(tenant, who, target, how, params, Change::Replaced, change).await
}

async fn update_owned(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    how: Update,
    params: &WriteParams,
    made: Change,
    change: impl Fn(&Value) -> Result<Value>,
) -> Result<Written> {
    let rt = &target.rt;
    let name = target.name.as_deref().expect("a named target");
    for _ in 0..RETRIES {
        let (kv, current) = read(tenant, target, name).await?;
        let mut changed = change(&current)?;
        let warnings = decode(rt, params, &mut changed, made.source())?;
        let object = object::prepare_update(
            rt,
            &current,
            changed,
            target.namespace.as_deref(),
            name,
            how.scope,
        )?;
        let mut object = strategy(tenant, who, rt, object, false).await?;
        if made != Change::Applied {
            record(rt, Some(&current), &mut object, params);
        }
        // The last finalizer removed from an object being deleted: it goes now.
        let gone = object::is_deleting(&object) && !object::has_finalizers(rt, &object);
        let value = if gone { None } else { Some(encode(&object)?) };
        if params.dry_run {
            let object = with_resource_version(object, kv.mod_revision);
            return Ok(Written { object, warnings });
        }
        let written = if let Some(value) = value {
            let lease = tenant.lease_for(rt).await.map_err(store_error)?;
            tenant
                .store
                .update(key(target, name), value, Some(kv.mod_revision), lease)
                .await
                .map(|kv| kv.mod_revision)
        } else {
            tenant
                .store
                .delete(key(target, name), Some(kv.mod_revision))
                .await
                .map(|deleted| deleted.revision)
        };
        match written {
            Ok(revision) => {
                let object = with_resource_version(object, revision);
                return Ok(Written { object, warnings });
            }
            Err(vcluster_store::Error::Conflict { .. }) if !how.conditional => continue,
            Err(vcluster_store::Error::Conflict { .. }) => {
                return Err(ApiError::conflict(rt, name));
            }
            Err(vcluster_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(rt, name));
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// The 409 of an apply that would take fields other managers own, in upstream's wording.
fn apply_conflict(conflicts: Vec<apply::Conflict>) -> ApiError {
    let with = |c: &apply::Conflict| format!("{:?} using {}", c.manager, c.api_version);
    let message = match conflicts.as_slice() {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            with(one),
            one.field
        ),
        many => {
            let mut text = format!("Apply failed with {} conflicts:", many.len());
            let mut managers: Vec<String> = many.iter().map(with).collect();
            managers.dedup();
            for manager in managers {
                text.push_str(&format!(" conflicts with {manager}:"));
                for c in many.iter().filter(|c| with(c) == manager) {
                    text.push_str(&format!("\n- {}", c.field));
                }
            }
            text
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", with(c)), "field": c.field}))
        .collect();
    ApiError {
        details: Some(json!({"causes": causes})),
        ..ApiError::new(409, Reason::Conflict, message)
    }
}

/// `application/apply-patch+yaml`: the client's configuration applied as its field
/// manager's, creating the object if it does not exist.
async fn server_side_apply(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    body: &[u8],
    params: &WriteParams,
) -> Result<Written> {
    let mut applied: Value = serde_saphyr::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the apply configuration is not valid YAML or JSON: {e}"
        ))
    })?;
    let rt = &target.rt;
    let name = target.name.as_deref().expect("a named target");
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration must be an object",
        ));
    }
    if meta_str(&applied, "name").is_none() {
        applied["metadata"]["name"] = json!(name);
    }
    let manager = manager(params);
    let schema = rt.custom.as_ref().and_then(|c| c.schema.as_ref());
    let api_version = rt.api_version();
    let shape = apply::Shape::of(&api_version, &rt.kind, schema);
    let now = fresh().now;
    let force = params.force;
    for _ in 0..RETRIES {
        match read(tenant, target, name).await {
            Err(e) if e.is(Reason::NotFound) => {
                let created = apply::apply(None, &applied, shape, manager, force, &now)
                    .map_err(apply_conflict)?;
                let collection = Target {
                    name: None,
                    ..target.clone()
                };
                match create(tenant, who, &collection, created, params).await {
                    Err(e) if e.is(Reason::AlreadyExists) => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {
                let change = |current: &Value| {
                    apply::apply(Some(current), &applied, shape, manager, force, &now)
                        .map_err(apply_conflict)
                };
                let how = Update::of(scope(target.subresource.as_deref()));
                let made = Change::Applied;
                return update_owned(tenant, who, target, how, params, made, change).await;
            }
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// Which part of an object a request to `subresource` may change.
pub(crate) fn scope(subresource: Option<&str>) -> UpdateScope {
    match subresource {
        Some("status") => UpdateScope::Status,
        Some("finalize") => UpdateScope::Finalize,
        _ => UpdateScope::Main,
    }
}

/// Applies a patch of media type `media` to `doc`, an object of `api_version`/`kind`.
pub(crate) fn apply_patch(
    media: &str,
    patch: &Value,
    doc: &mut Value,
    api_version: &str,
    kind: &str,
) -> Result<()> {
    match media {
        "application/merge-patch+json" => {
            json_patch::merge(doc, patch);
            Ok(())
        }
        // Up to the copy limit of work (a copy bomb's 3 MiB): the runtime's other tasks are
        // handed to another thread meanwhile, so that it delays no other request.
        "application/json-patch+json" => {
            let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
            if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
                tokio::task::block_in_place(|| vcluster_core::jsonpatch::apply(doc, patch))
            } else {
                vcluster_core::jsonpatch::apply(doc, patch)
            }
        }
        "application/strategic-merge-patch+json" => {
            *doc = vcluster_core::patch::strategic_merge(doc, patch, api_version, kind).map_err(
                |e| {
                    ApiError::bad_request(format!(
                        "the strategic merge patch could not be applied: {e}"
                    ))
                },
            )?;
            Ok(())
        }
        other => Err(ApiError::new(
            415,
            Reason::UnsupportedMediaType,
            format!(
                "the patch type {other:?} is not supported; use application/merge-patch+json, \
                 application/json-patch+json or application/strategic-merge-patch+json"
            ),
        )),
    }
}

pub(crate) fn parse_patch(patch: &[u8]) -> Result<Value> {
    serde_json::from_slice(patch)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))
}

/// A patch that sets metadata.resourceVersion is conditional on it.
pub(crate) fn conditional_patch(patch: &Value) -> bool {
    patch
        .pointer("/metadata/resourceVersion")
        .is_some_and(|v| !v.is_null())
}

/// Patches the target with a patch of media type `media`.
pub(crate) async fn patch(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    media: &str,
    patch: &[u8],
    params: &WriteParams,
) -> Result<Written> {
    let rt = &target.rt;
    if media == APPLY {
        return server_side_apply(tenant, who, target, patch, params).await;
    }
    if rt.custom.is_some() && media == "application/strategic-merge-patch+json" {
        // Custom resources have no patch strategies; clients fall back to merge patches.
        return Err(ApiError::new(
            415,
            Reason::UnsupportedMediaType,
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json",
        ));
    }
    let patch = parse_patch(patch)?;
    let how = Update {
        scope: scope(target.subresource.as_deref()),
        conditional: conditional_patch(&patch),
    };
    let change = |current: &Value| {
        let mut doc = current.clone();
        apply_patch(media, &patch, &mut doc, &rt.api_version(), &rt.kind)?;
        Ok(doc)
    };
    update_owned(tenant, who, target, how, params, Change::Patched, change).await
}

/// What a delete did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// The object is gone (`last` is it as it was last stored).
    Gone { last: Value, revision: u64 },
    /// The object is marked for deletion and held by its finalizers (or the delete was a
    /// dry run): `object` is it now.
    Held { object: Value, revision: u64 },
}

impl Deleted {
    /// The store revision of the delete, or of the mark (or of the last write, when nothing
    /// was written).
    pub(crate) fn revision(&self) -> u64 {
        match self {
            Self::Gone { revision, .. } | Self::Held { revision, .. } => *revision,
        }
    }
}

/// The finalizer through which the garbage collector carries out a deletion's
/// propagation policy: `Foreground` (dependents first) or `Orphan` (dependents kept).
/// `Background`, the default, needs none: dependents go after their owner.
fn propagation_finalizer(params: &DeleteParams) -> Option<&'static str> {
    match params.propagation? {
        Propagation::Foreground => Some("foregroundDeletion"),
        Propagation::Orphan => Some("orphan"),
        Propagation::Background => None,
    }
}

/// Deletes an object whose stored value cannot be read (`why`): its key goes at once, since
/// neither its finalizers nor its uid can be known, so that nothing unreadable outlives a
/// DELETE or holds up its namespace. `None`: the key changed meanwhile; read it again.
async fn delete_unreadable(
    tenant: &Tenant,
    target: &Target,
    kv: &KeyValue,
    why: serde_json::Error,
    params: &DeleteParams,
) -> Result<Option<Deleted>> {
    let rt = &target.rt;
    let name = target.name.as_deref().expect("a named target");
    if params.uid.is_some()
        || params
            .resource_version
            .as_ref()
            .is_some_and(|rv| *rv != kv.mod_revision.to_string())
    {
        return Err(ApiError::conflict(rt, name));
    }
    let mut last =
        json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}});
    if let Some(namespace) = &target.namespace {
        last["metadata"]["namespace"] = json!(namespace);
    }
    if params.dry_run {
        return Ok(Some(Deleted::Held {
            object: last,
            revision: kv.mod_revision,
        }));
    }
    match tenant
        .store
        .delete(key(target, name), Some(kv.mod_revision))
        .await
    {
        Ok(deleted) => {
            tracing::warn!(
                tenant = %tenant.name,
                key = %String::from_utf8_lossy(&kv.key),
                error = %why,
                "an unreadable stored object was deleted"
            );
            Ok(Some(Deleted::Gone {
                last,
                revision: deleted.revision,
            }))
        }
        Err(vcluster_store::Error::Conflict { .. }) => Ok(None),
        Err(vcluster_store::Error::NotFound { .. }) => Err(ApiError::not_found(rt, name)),
        Err(e) => Err(store_error(e)),
    }
}

/// Writes `marked`, the object of a named target read at `revision` and marked for
/// deletion: the object held, or none if it changed meanwhile (to be read again).
async fn write_mark(
    tenant: &Tenant,
    target: &Target,
    marked: Value,
    revision: u64,
) -> Result<Option<Deleted>> {
    let name = target.name.as_deref().expect("a named target");
    let write = tenant
        .store
        .update(key(target, name), encode(&marked)?, Some(revision), None);
    match write.await {
        Ok(kv) => Ok(Some(Deleted::Held {
            object: with_resource_version(marked, kv.mod_revision),
            revision: kv.mod_revision,
        })),
        Err(vcluster_store::Error::Conflict { .. }) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

/// Deletes the object a named target names: at once, or by marking it, when finalizers hold
/// it or it is a pod given a grace period to stop (`vcluster_core::deletion`).
pub(crate) async fn delete(
    tenant: &Tenant,
    target: &Target,
    params: &DeleteParams,
) -> Result<Deleted> {
    let rt = &target.rt;
    let name = target.name.as_deref().expect("a named target");
    if rt.group.is_empty() && rt.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            rt,
            name,
            "this namespace may not be deleted",
        ));
    }
    for _ in 0..RETRIES {
        let kv = tenant
            .store
            .get(&key(target, name))
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let mut current = match stored::decode(&kv) {
            Ok(current) => current,
            Err(e) => match delete_unreadable(tenant, target, &kv, e, params).await? {
                Some(deleted) => return Ok(deleted),
                None => continue,
            },
        };
        let uid = meta_str(&current, "uid").unwrap_or_default();
        if let Some(wanted) = &params.uid
            && wanted != uid
        {
            return Err(ApiError::new(
                409,
                Reason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}",
                    rt.qualified(),
                ),
            ));
        }
        if params
            .resource_version
            .as_ref()
            .is_some_and(|rv| *rv != kv.mod_revision.to_string())
        {
            return Err(ApiError::conflict(rt, name));
        }
        if !object::is_deleting(&current)
            && let Some(finalizer) = propagation_finalizer(params)
        {
            object::add_finalizer(&mut current, finalizer);
        }
        let revision = kv.mod_revision;
        let deletion = if admission::is_pod(rt) {
            deletion::of_pod(&current, params.grace_period, jiff::Timestamp::now())
        } else {
            Deletion::Now
        };
        match deletion {
            Deletion::Pending => {
                return Ok(Deleted::Held {
                    object: current,
                    revision,
                });
            }
            Deletion::Mark { grace: 0, .. } if !object::has_finalizers(rt, &current) => {}
            Deletion::Mark { timestamp, grace } => {
                // A graceful deletion: the object stays, marked, for its grace.
                let mut marked = current.clone();
                if !object::is_deleting(&current)
                    && let Some(generation) = marked["metadata"]["generation"].as_i64()
                    && generation > 0
                {
                    marked["metadata"]["generation"] = json!(generation + 1);
                }
                marked["metadata"]["deletionTimestamp"] = json!(timestamp);
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                if params.dry_run {
                    return Ok(Deleted::Held {
                        object: marked,
                        revision,
                    });
                }
                match write_mark(tenant, target, marked, revision).await? {
                    Some(held) => return Ok(held),
                    None => continue,
                }
            }
            Deletion::Now => {}
        }
        if object::has_finalizers(rt, &current) {
            // Deletion waits for the finalizers' owners; the object is marked.
            if object::is_deleting(&current) || params.dry_run {
                return Ok(Deleted::Held {
                    object: current,
                    revision,
                });
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(fresh().now);
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if rt.group.is_empty() && rt.kind == "Namespace" {
                marked["status"]["phase"] = json!("Terminating");
            }
            match write_mark(tenant, target, marked, revision).await? {
                Some(held) => return Ok(held),
                None => continue,
            }
        }
        if params.dry_run {
            return Ok(Deleted::Held {
                object: current,
                revision,
            });
        }
        match tenant.store.delete(key(target, name), Some(revision)).await {
            Ok(deleted) => {
                return Ok(Deleted::Gone {
                    last: current,
                    revision: deleted.revision,
                });
            }
            Err(vcluster_store::Error::Conflict { .. }) => continue,
            Err(vcluster_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(rt, name));
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::conflict(rt, name))
}
