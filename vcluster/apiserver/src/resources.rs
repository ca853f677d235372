//! CRUD on resources: get, list, create, update, patch, delete, deletecollection, and the
//! `status` subresource. Watches are in `watch.rs`.
//!
//! Every read and write goes through the tenant's scoped store; a write is a
//! compare-and-swap on the revision the object was read at, retried when the client sent no
//! resourceVersion (an unconditional update) and refused with 409 when it did.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use vcluster_core::apply;
use vcluster_core::object::{self, UpdateScope, meta_str, with_resource_version};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::selector::{FieldSelector, LabelSelector};
use vcluster_core::status::ApiError;
use vcluster_store::{KeyValue, RangeRequest};

use crate::http::{Body, Shape, content_type, error, json as respond, ok, query, read_body, shape};
use crate::router::Target;
use crate::tenant::{Tenant, fresh};
use crate::{User, accounts, admission, authz, crds, reviews, services, watch};

/// How often a write retries after losing a compare-and-swap it may retry.
const RETRIES: usize = 16;

/// The namespaces upstream's `NamespaceLifecycle` admission never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

tokio::task_local! {
    /// The user a request acts for, for the admission checks deep in the write path (RBAC's
    /// escalation check); writes of the server's own background work have none.
    static REQUESTER: User;
}

/// The checks every write makes of the object it is about to store: a CRD's or custom
/// object's (see `crds::admit`), and RBAC's escalation check for the requester.
async fn admit(tenant: &Tenant, rt: &ResourceType, object: Value, creating: bool) -> Result<Value> {
    let object = crds::admit(tenant, rt, object, creating).await?;
    if let Ok(user) = REQUESTER.try_with(Clone::clone) {
        authz::check_grant(tenant, &user, rt, &object).await?;
    }
    Ok(object)
}

/// What [`delete_all`] found: how many objects there were, and those still there after
/// their delete (held by finalizers).
#[derive(Debug, Default)]
pub(crate) struct Swept {
    pub found: usize,
    pub held: Vec<Value>,
}

/// Deletes every object of `rt` under `prefix` through the API's delete (so their own
/// finalizers hold them as usual). The cleanup of a deleted CRD or namespace repeats it
/// until it finds nothing: an object created while one pass ran is found by the next.
pub(crate) async fn delete_all(
    tenant: &Tenant,
    rt: &Arc<ResourceType>,
    prefix: &str,
) -> Result<Swept> {
    let page = tenant
        .store
        .range(RangeRequest::prefix(prefix.to_owned()))
        .await
        .map_err(store_error)?;
    let mut swept = Swept {
        found: page.kvs.len(),
        held: Vec::new(),
    };
    for kv in &page.kvs {
        let Ok(object) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let target = Target {
            rt: rt.clone(),
            namespace: meta_str(&object, "namespace").map(str::to_owned),
            name: meta_str(&object, "name").map(str::to_owned),
            subresource: None,
        };
        match delete(tenant, &target, &json!({})).await {
            // A Status: the object is gone; the object itself: it is held.
            Ok(left) if left["kind"] != "Status" => swept.held.push(left),
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(swept)
}

/// Removes `finalizer` from the list at `pointer` of the object `target` names (as
/// `manager`); an object being deleted then goes if nothing else holds it.
pub(crate) async fn release(
    tenant: &Tenant,
    target: &Target,
    scope: UpdateScope,
    pointer: &str,
    finalizer: &str,
    manager: &str,
) -> Result<()> {
    let change = |current: &Value| {
        let mut next = current.clone();
        if let Some(list) = next.pointer_mut(pointer).and_then(Value::as_array_mut) {
            list.retain(|f| f != finalizer);
        }
        Ok(next)
    };
    let params = HashMap::from([("fieldManager".to_owned(), manager.to_owned())]);
    match update(tenant, target, scope, &params, false, change).await {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(()),
    }
}

/// Server-side apply's patch type.
const APPLY: &str = "application/apply-patch+yaml";

pub(crate) type Result<T, E = ApiError> = std::result::Result<T, E>;

pub(crate) async fn handle(
    tenant: &Tenant,
    user: &User,
    target: Target,
    req: Request<Incoming>,
) -> Response<Body> {
    let writes_crds = crds::is_crd(&target.rt) && req.method() != Method::GET;
    let answered = REQUESTER
        .scope(user.clone(), dispatch(tenant, user, target, req))
        .await;
    let answered = match answered {
        Ok(response) if writes_crds && response.status().is_success() => {
            crds::settle(tenant).await.map(|()| response)
        }
        other => other,
    };
    match answered {
        Ok(response) => response,
        Err(e) => {
            if e.code >= 500 {
                tracing::error!(error = %e, "request failed");
            }
            error(&e)
        }
    }
}

async fn dispatch(
    tenant: &Tenant,
    user: &User,
    target: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let mut params = query(req.uri());
    let method = req.method().clone();
    let headers = req.headers().clone();
    if content_type(&headers) == APPLY && !params.contains_key("fieldManager") {
        return Err(ApiError::invalid_kind(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![vcluster_core::status::Cause::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    params.insert("fieldManager".into(), field_manager(&params, &headers));
    let sub = target.subresource.as_deref();
    let collection = target.name.is_none();
    if reviews::is_review(&target.rt) {
        // Questions, answered and never stored: only create is served.
        if method != Method::POST || !collection {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported on {}", target.rt.qualified()),
            ));
        }
        let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
        return reviews::answer(tenant, user, &target.rt, body)
            .await
            .map(|v| respond(StatusCode::CREATED, &v));
    }
    match (method, collection, sub) {
        (Method::GET, true, None) if is_true(params.get("watch")) => {
            watch::handle(tenant, &target, &params, shape(&headers)).await
        }
        (Method::GET, true, None) => {
            let listed = list(tenant, &target, &params).await?;
            Ok(shaped_list(&target.rt, shape(&headers), listed))
        }
        (Method::GET, false, None | Some("status")) => {
            let object = get(tenant, &target).await?;
            Ok(ok(&shaped_object(&target.rt, shape(&headers), object)))
        }
        (Method::POST, true, None) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            create(tenant, &target, body, &params)
                .await
                .map(|v| respond(StatusCode::CREATED, &v))
        }
        (Method::PUT, false, None | Some("status" | "finalize")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            let scope = scope(sub);
            let change = |_: &Value| Ok(body.clone());
            update(
                tenant,
                &target,
                scope,
                &params,
                has_resource_version(&body),
                change,
            )
            .await
            .map(|v| ok(&v))
        }
        (Method::PATCH, false, None | Some("status")) => {
            let kind = content_type(&headers);
            let patch = read_body(req.into_body()).await?;
            patch_object(tenant, &target, &kind, &patch, &params)
                .await
                .map(|v| ok(&v))
        }
        (Method::DELETE, false, None) => {
            let body = read_body(req.into_body()).await?;
            let options = delete_options(&headers, &body, &params)?;
            delete(tenant, &target, &options).await.map(|v| ok(&v))
        }
        (Method::DELETE, true, None) => {
            let deleted = delete_collection(tenant, &target, &params).await?;
            Ok(shaped_list(&target.rt, Shape::Object, deleted))
        }
        (Method::GET, false, Some("scale")) => {
            scale(tenant, &target, None, &params).await.map(|v| ok(&v))
        }
        (Method::PUT, false, Some("scale")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            scale(tenant, &target, Some(("PUT", body)), &params)
                .await
                .map(|v| ok(&v))
        }
        (Method::PATCH, false, Some("scale")) => {
            let media = content_type(&headers);
            let patch = parse_patch(&read_body(req.into_body()).await?)?;
            scale(tenant, &target, Some((&media, patch)), &params)
                .await
                .map(|v| ok(&v))
        }
        (Method::POST, false, Some("binding")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            bind(tenant, &target, &body, &params)
                .await
                .map(|v| respond(StatusCode::CREATED, &v))
        }
        (Method::POST, false, Some("token")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            accounts::token_request(tenant, &target, &body)
                .await
                .map(|v| respond(StatusCode::CREATED, &v))
        }
        (Method::POST, false, Some("eviction")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            let options = body
                .get("deleteOptions")
                .cloned()
                .unwrap_or_else(|| json!({}));
            delete(tenant, &target, &options).await?;
            Ok(respond(StatusCode::CREATED, &success()))
        }
        (method, _, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on this path"),
        )),
    }
}

fn is_true(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

fn scope(sub: Option<&str>) -> UpdateScope {
    match sub {
        Some("status") => UpdateScope::Status,
        Some("finalize") => UpdateScope::Finalize,
        _ => UpdateScope::Main,
    }
}

fn has_resource_version(body: &Value) -> bool {
    meta_str(body, "resourceVersion").is_some_and(|rv| !rv.is_empty())
}

/// `fieldValidation=Strict` (what kubectl sends): fields the type does not have are a 400,
/// as upstream, rather than silently dropped typos.
fn strict_fields(
    rt: &ResourceType,
    params: &HashMap<String, String>,
    object: &Value,
) -> Result<()> {
    if params.get("fieldValidation").is_none_or(|v| v != "Strict") {
        return Ok(());
    }
    let mut typed = object.clone();
    typed["apiVersion"] = json!(rt.api_version());
    typed["kind"] = json!(rt.kind);
    match vcluster_core::protobuf::unknown_fields(&typed) {
        Some(unknown) if !unknown.is_empty() => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

fn dry_run(params: &HashMap<String, String>) -> bool {
    params.get("dryRun").is_some_and(|v| v == "All")
}

/// Decodes a request body: JSON, or Kubernetes protobuf (kubectl >= 1.32's typed commands,
/// helm >= 3.17's release secrets, every client-go typed client).
fn decode_body(headers: &http::HeaderMap, body: &[u8]) -> Result<Value> {
    match content_type(headers).as_str() {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" => serde_saphyr::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
        "application/vnd.kubernetes.protobuf" => {
            vcluster_core::protobuf::decode(body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid protobuf: {e}"))
            })
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            ),
        )),
    }
}

fn key(target: &Target, name: &str) -> Bytes {
    Bytes::from(registry::storage_key(
        &target.rt,
        target.namespace.as_deref(),
        name,
    ))
}

pub(crate) fn store_error(e: vcluster_store::Error) -> ApiError {
    match e {
        vcluster_store::Error::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        vcluster_store::Error::FutureRevision { requested, current } => ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        ),
        e => ApiError::internal(format!("storage error: {e}")),
    }
}

/// A stored object as served.
pub(crate) fn served(kv: &KeyValue) -> Result<Value> {
    let object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
    Ok(with_resource_version(object, kv.mod_revision))
}

fn encode(object: &Value) -> Bytes {
    let mut stored = object.clone();
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&stored).expect("a JSON value serializes"))
}

async fn read(tenant: &Tenant, target: &Target, name: &str) -> Result<(KeyValue, Value)> {
    let kv = tenant
        .store
        .get(&key(target, name))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(&target.rt, name))?;
    let object = served(&kv)?;
    Ok((kv, object))
}

async fn get(tenant: &Tenant, target: &Target) -> Result<Value> {
    let name = target.name.as_deref().expect("a named target");
    Ok(read(tenant, target, name).await?.1)
}

/// Seconds since the Unix epoch, for ages in Tables.
pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A list in the shape the client asked for.
fn shaped_list(rt: &ResourceType, shape: Shape, list: Listed) -> Response<Body> {
    match shape {
        // Custom objects may be stored at another version than the one asked for.
        Shape::Object if list.encoded.is_some() && rt.custom.is_none() => {
            // The items are encoded already: splice them into the list.
            let encoded = list.encoded.unwrap_or_default();
            let head = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": list.metadata});
            let mut out = serde_json::to_vec(&head).expect("a JSON value serializes");
            out.pop(); // the closing brace
            out.extend_from_slice(b",\"items\":[");
            for (i, item) in encoded.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item);
            }
            out.extend_from_slice(b"]}");
            crate::http::json_bytes(StatusCode::OK, out)
        }
        Shape::Object => {
            /// The list as served, encoded straight from the shared objects.
            #[derive(serde::Serialize)]
            struct Body<'a> {
                kind: String,
                #[serde(rename = "apiVersion")]
                api_version: String,
                metadata: &'a Value,
                items: &'a [Arc<Value>],
            }
            let items: Vec<Arc<Value>> = if rt.custom.is_some() {
                let served = |o: &Arc<Value>| Arc::new(crds::in_version(rt, (**o).clone()));
                list.items.iter().map(served).collect()
            } else {
                list.items
            };
            let body = Body {
                kind: rt.list_kind(),
                api_version: rt.api_version(),
                metadata: &list.metadata,
                items: &items,
            };
            let bytes = serde_json::to_vec(&body).expect("a list serializes");
            crate::http::json_bytes(StatusCode::OK, bytes)
        }
        Shape::Table => {
            let items: Vec<Value> = list.items.iter().map(|o| (**o).clone()).collect();
            ok(&vcluster_core::table::table(
                rt,
                &items,
                list.metadata,
                now(),
            ))
        }
        Shape::Metadata => ok(&json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list.metadata,
            "items": list.items.iter().map(|o| vcluster_core::table::partial_metadata(o)).collect::<Vec<_>>(),
        })),
    }
}

/// One object in the shape the client asked for.
pub(crate) fn shaped_object(rt: &ResourceType, shape: Shape, object: Value) -> Value {
    match shape {
        Shape::Object => crds::in_version(rt, object),
        Shape::Table => {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            vcluster_core::table::table(rt, &[object], json!({"resourceVersion": rv}), now())
        }
        Shape::Metadata => vcluster_core::table::partial_metadata(&object),
    }
}

/// The fields every resource can be selected by, and those of some types.
pub(crate) fn selectable_fields(rt: &ResourceType) -> Vec<&'static str> {
    let mut fields = vec!["metadata.name", "metadata.namespace"];
    match rt.gk() {
        ("", "Pod") => fields.extend([
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]),
        ("", "Event") => fields.extend([
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
        ("", "Secret") => fields.push("type"),
        ("", "Namespace") => fields.push("status.phase"),
        ("", "Node") => fields.push("spec.unschedulable"),
        ("batch", "Job") => fields.push("status.successful"),
        _ => {}
    }
    fields
}

pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub(crate) fn parse(rt: &ResourceType, params: &HashMap<String, String>) -> Result<Self> {
        let labels =
            LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(
            params.get("fieldSelector").map_or("", String::as_str),
            &selectable_fields(rt),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Self { labels, fields })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }
}

/// A continue token: the revision of the first page and the last key returned.
fn encode_continue(revision: u64, key: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = json!({"v": 1, "rv": revision, "start": b64.encode(key)});
    b64.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(u64, Bytes)> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(token).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = value["rv"].as_u64().ok_or_else(bad)?;
    let start = b64
        .decode(value["start"].as_str().ok_or_else(bad)?)
        .map_err(|_| bad())?;
    if !start.starts_with(prefix.as_bytes()) {
        return Err(bad());
    }
    Ok((rv, Bytes::from(start)))
}

pub(crate) fn parse_revision(params: &HashMap<String, String>) -> Result<Option<u64>> {
    match params.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
    }
}

/// The objects of a list and its metadata (`resourceVersion`, `continue`).
struct Listed {
    items: Vec<Arc<Value>>,
    /// The items' JSON, where the watch cache already has it.
    encoded: Option<Vec<Bytes>>,
    metadata: Value,
}

async fn list(
    tenant: &Tenant,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<Listed> {
    let rt = &target.rt;
    let selectors = Selectors::parse(rt, params)?;
    let prefix = registry::storage_prefix(rt, target.namespace.as_deref());
    let limit = match params.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
    };
    let requested = parse_revision(params)?;
    let (mut after, mut revision) = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            if requested.is_some_and(|rv| rv != 0) {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, start) = decode_continue(token, &prefix)?;
            (Some(start), Some(rv))
        }
        None => {
            let exact = params
                .get("resourceVersionMatch")
                .is_some_and(|m| m == "Exact");
            if let Some(at_least) = requested.filter(|_| !exact) {
                // Any state at least as new as `at_least` will do: the watch cache answers,
                // as kube-apiserver's does (a resourceVersion of "" reads the store).
                return list_from_cache(tenant, target, &selectors, &prefix, at_least).await;
            }
            (None, requested.filter(|rv| exact && *rv > 0))
        }
    };
    let chunk = limit.map_or(1000, |l| l.clamp(1, 1000));
    let mut items = Vec::new();
    let mut next = None;
    'pages: loop {
        let page = tenant
            .store
            .range(RangeRequest {
                prefix: Bytes::from(prefix.clone()),
                start_after: after.clone(),
                limit: Some(chunk),
                revision,
            })
            .await
            .map_err(store_error)?;
        revision = Some(page.revision);
        let count = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            let object = served(kv)?;
            if selectors.matches(&object) {
                items.push(Arc::new(object));
            }
            if limit.is_some_and(|l| items.len() >= l) {
                if i + 1 < count || page.more {
                    next = Some(encode_continue(page.revision, &kv.key));
                }
                break 'pages;
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => after = Some(last.key.clone()),
            _ => break,
        }
    }
    let mut metadata = json!({"resourceVersion": revision.unwrap_or(0).to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    Ok(Listed {
        items,
        encoded: None,
        metadata,
    })
}

async fn list_from_cache(
    tenant: &Tenant,
    target: &Target,
    selectors: &Selectors,
    prefix: &str,
    at_least: u64,
) -> Result<Listed> {
    let rt = &target.rt;
    let cache = tenant.cache(rt, at_least).await.map_err(store_error)?;
    // A revision the cache has not seen yet is waited for, as upstream does, then answered
    // "too large resource version".
    if let Err(current) = cache
        .wait_for(at_least, std::time::Duration::from_secs(3))
        .await
    {
        return Err(ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {at_least}, current: {current}"),
        ));
    }
    let (objects, revision) = cache.snapshot(prefix.as_bytes());
    let (items, encoded) = objects
        .into_iter()
        .filter(|(_, cached)| selectors.matches(&cached.object))
        .map(|(_, cached)| (cached.object, cached.encoded))
        .unzip();
    Ok(Listed {
        items,
        encoded: Some(encoded),
        metadata: json!({"resourceVersion": revision.to_string()}),
    })
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

/// New content may go into `namespace`: it exists and is not being deleted (upstream's
/// `NamespaceLifecycle` admission).
async fn namespace_open(
    tenant: &Tenant,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let namespaces = &registry::find("", "v1", "namespaces").expect("namespaces are built in");
    let key = registry::storage_key(namespaces, None, namespace);
    let Some(found) = current(tenant, namespaces, key.as_bytes()).await? else {
        return Err(ApiError::not_found(namespaces, namespace));
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

pub(crate) async fn create(
    tenant: &Tenant,
    target: &Target,
    body: Value,
    params: &HashMap<String, String>,
) -> Result<Value> {
    if let Some(ns) = &target.namespace {
        namespace_open(
            tenant,
            &target.rt,
            ns,
            meta_str(&body, "name").unwrap_or_default(),
        )
        .await?;
    }
    strict_fields(&target.rt, params, &body)?;
    let generated = meta_str(&body, "name").is_none_or(str::is_empty);
    let quotas = match &target.namespace {
        Some(ns) => admission::quotas(tenant, ns).await?,
        None => Vec::new(),
    };
    // Held until the object is stored, so that no other create takes its addresses or the
    // rest of its namespace's quota.
    let _allocating = match services::is_service(&target.rt) || !quotas.is_empty() {
        true => Some(tenant.allocating.lock().await),
        false => None,
    };
    for _ in 0..RETRIES {
        let object = object::prepare_create(
            &target.rt,
            body.clone(),
            target.namespace.as_deref(),
            &fresh(),
        )?;
        let mut object = admit(tenant, &target.rt, object, true).await?;
        if services::is_service(&target.rt) {
            object = services::allocate(tenant, &target.rt, object).await?;
        }
        if let Some(ns) = &target.namespace {
            object = admission::pod(tenant, &target.rt, ns, object).await?;
            admission::check_quotas(tenant, &target.rt, ns, &object, &quotas).await?;
        }
        if object.pointer("/metadata/managedFields").is_none() {
            record(&target.rt, None, &mut object, params);
        }
        let name = meta_str(&object, "name")
            .expect("prepared objects are named")
            .to_owned();
        let key = key(target, &name);
        if dry_run(params) {
            if tenant.store.get(&key).await.map_err(store_error)?.is_some() {
                return Err(ApiError::already_exists(&target.rt, &name));
            }
            return Ok(object);
        }
        let lease = tenant.lease_for(&target.rt).await.map_err(store_error)?;
        match tenant.store.create(key, encode(&object), lease).await {
            Ok(kv) => return Ok(with_resource_version(object, kv.mod_revision)),
            // A generated name that collided: draw another.
            Err(vcluster_store::Error::AlreadyExists { .. }) if generated => continue,
            Err(vcluster_store::Error::AlreadyExists { .. }) => {
                return Err(ApiError::already_exists(&target.rt, &name));
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::new(
        500,
        "AlreadyExists",
        "no free generated name was found",
    ))
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
        ..ApiError::new(409, "Conflict", message)
    }
}

/// `application/apply-patch+yaml`: the client's configuration applied as its field
/// manager's, creating the object if it does not exist.
async fn server_side_apply(
    tenant: &Tenant,
    target: &Target,
    body: &[u8],
    params: &HashMap<String, String>,
) -> Result<Value> {
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
    let force = is_true(params.get("force"));
    let manager = params.get("fieldManager").map_or("unknown", String::as_str);
    let schema = rt.custom.as_ref().and_then(|c| c.schema.as_ref());
    let api_version = rt.api_version();
    let shape = apply::Shape::of(&api_version, &rt.kind, schema);
    let now = fresh().now;
    for _ in 0..RETRIES {
        match read(tenant, target, name).await {
            Err(e) if e.code == 404 => {
                let created = apply::apply(None, &applied, shape, manager, force, &now)
                    .map_err(apply_conflict)?;
                let collection = Target {
                    name: None,
                    ..target.clone()
                };
                match create(tenant, &collection, created, params).await {
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {
                let change = |current: &Value| {
                    apply::apply(Some(current), &applied, shape, manager, force, &now)
                        .map_err(apply_conflict)
                };
                let scope = scope(target.subresource.as_deref());
                return update_owned(tenant, target, scope, params, false, false, change).await;
            }
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// The manager a write is recorded under: the `fieldManager` parameter, else the client's
/// name from its User-Agent (`kubectl/v1.33.0 ...` → `kubectl`), as upstream defaults it.
fn field_manager(params: &HashMap<String, String>, headers: &http::HeaderMap) -> String {
    if let Some(manager) = params.get("fieldManager").filter(|m| !m.is_empty()) {
        return manager.clone();
    }
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// Records `manager` as the owner of what a write changed (not for applies, which set
/// `managedFields` themselves).
fn record(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    params: &HashMap<String, String>,
) {
    let schema = rt.custom.as_ref().and_then(|c| c.schema.as_ref());
    let manager = params.get("fieldManager").map_or("unknown", String::as_str);
    let shape = apply::Shape::of(&rt.api_version(), &rt.kind, schema);
    apply::record_update(old, new, shape, manager, &fresh().now);
}

/// Reads, changes (with `change`, given the object as served) and writes back one object.
/// `conditional` says the client sent a resourceVersion: a lost race is then a 409; without
/// one, the change is applied again to the newer object.
pub(crate) async fn update(
    tenant: &Tenant,
    target: &Target,
    scope: UpdateScope,
    params: &HashMap<String, String>,
    conditional: bool,
    change: impl Fn(&Value) -> Result<Value>,
) -> Result<Value> {
    update_owned(tenant, target, scope, params, conditional, true, change).await
}

/// [`update`], recording the field manager's ownership or (`record: false`, for applies)
/// keeping the `managedFields` the change set.
async fn update_owned(
    tenant: &Tenant,
    target: &Target,
    scope: UpdateScope,
    params: &HashMap<String, String>,
    conditional: bool,
    record_owner: bool,
    change: impl Fn(&Value) -> Result<Value>,
) -> Result<Value> {
    let name = target.name.as_deref().expect("a named target");
    for _ in 0..RETRIES {
        let (kv, current) = read(tenant, target, name).await?;
        let changed = change(&current)?;
        strict_fields(&target.rt, params, &changed)?;
        let object = object::prepare_update(
            &target.rt,
            &current,
            changed,
            target.namespace.as_deref(),
            name,
            scope,
        )?;
        let mut object = admit(tenant, &target.rt, object, false).await?;
        if record_owner {
            record(&target.rt, Some(&current), &mut object, params);
        }
        if dry_run(params) {
            return Ok(with_resource_version(object, kv.mod_revision));
        }
        // The last finalizer removed from an object being deleted: it goes now.
        if object::is_deleting(&object) && !object::has_finalizers(&target.rt, &object) {
            return match tenant
                .store
                .delete(key(target, name), Some(kv.mod_revision))
                .await
            {
                Ok(deleted) => Ok(with_resource_version(object, deleted.revision)),
                Err(vcluster_store::Error::Conflict { .. }) if !conditional => continue,
                Err(vcluster_store::Error::Conflict { .. }) => {
                    Err(ApiError::conflict(&target.rt, name))
                }
                Err(vcluster_store::Error::NotFound { .. }) => {
                    Err(ApiError::not_found(&target.rt, name))
                }
                Err(e) => Err(store_error(e)),
            };
        }
        let lease = tenant.lease_for(&target.rt).await.map_err(store_error)?;
        match tenant
            .store
            .update(
                key(target, name),
                encode(&object),
                Some(kv.mod_revision),
                lease,
            )
            .await
        {
            Ok(kv) => return Ok(with_resource_version(object, kv.mod_revision)),
            Err(vcluster_store::Error::Conflict { .. }) if !conditional => continue,
            Err(vcluster_store::Error::Conflict { .. }) => {
                return Err(ApiError::conflict(&target.rt, name));
            }
            Err(vcluster_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(&target.rt, name));
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::conflict(&target.rt, name))
}

/// Applies a patch of media type `media` to `doc`, an object of `api_version`/`kind`.
fn apply_patch(
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
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
            json_patch::patch(doc, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            })
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
            "UnsupportedMediaType",
            format!(
                "the patch type {other:?} is not supported; use application/merge-patch+json, \
                 application/json-patch+json or application/strategic-merge-patch+json"
            ),
        )),
    }
}

fn parse_patch(patch: &[u8]) -> Result<Value> {
    serde_json::from_slice(patch)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))
}

/// A patch that sets metadata.resourceVersion is conditional on it.
fn conditional_patch(patch: &Value) -> bool {
    patch
        .pointer("/metadata/resourceVersion")
        .is_some_and(|v| !v.is_null())
}

async fn patch_object(
    tenant: &Tenant,
    target: &Target,
    media: &str,
    patch: &[u8],
    params: &HashMap<String, String>,
) -> Result<Value> {
    let rt = &target.rt;
    if media == APPLY {
        return server_side_apply(tenant, target, patch, params).await;
    }
    if rt.custom.is_some() && media == "application/strategic-merge-patch+json" {
        // Custom resources have no patch strategies; clients fall back to merge patches.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json",
        ));
    }
    let patch = parse_patch(patch)?;
    let scope = scope(target.subresource.as_deref());
    update(
        tenant,
        target,
        scope,
        params,
        conditional_patch(&patch),
        |current| {
            let mut doc = current.clone();
            apply_patch(media, &patch, &mut doc, &rt.api_version(), &rt.kind)?;
            Ok(doc)
        },
    )
    .await
}

/// The `autoscaling/v1` Scale view of an object with replicas.
/// The JSON pointers of a scalable type's desired and observed replicas.
fn replica_pointers(rt: &ResourceType) -> (String, String) {
    let pointer = |dotted: &str| dotted.replace('.', "/");
    match rt.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(paths) => (
            pointer(&paths.spec_replicas),
            pointer(&paths.status_replicas),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into()),
    }
}

fn to_scale(rt: &ResourceType, object: &Value) -> Value {
    let custom_selector = rt
        .custom
        .as_ref()
        .and_then(|c| c.scale.as_ref())
        .map(|paths| {
            let at = paths.label_selector.as_deref().map(|p| p.replace('.', "/"));
            at.and_then(|p| {
                object
                    .pointer(&p)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
        });
    let (spec_replicas, status_replicas) = replica_pointers(rt);
    let selector = match object.pointer("/spec/selector") {
        _ if custom_selector.is_some() => custom_selector.unwrap_or_default(),
        Some(Value::Object(s)) if rt.kind == "ReplicationController" => s
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        Some(selector) => vcluster_core::selector::to_query(selector).unwrap_or_default(),
        None => String::new(),
    };
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer(&spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer(&status_replicas).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// Reads or changes the replicas of an object through its Scale view.
async fn scale(
    tenant: &Tenant,
    target: &Target,
    change: Option<(&str, Value)>,
    params: &HashMap<String, String>,
) -> Result<Value> {
    let rt = &target.rt;
    let Some((media, body)) = change else {
        return Ok(to_scale(rt, &get(tenant, target).await?));
    };
    let conditional = conditional_patch(&body);
    let updated = update(
        tenant,
        target,
        UpdateScope::Main,
        params,
        conditional,
        |current| {
            let mut scale = to_scale(rt, current);
            if media == "PUT" {
                scale = body.clone();
            } else {
                apply_patch(media, &body, &mut scale, "autoscaling/v1", "Scale")?;
            }
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .filter(|r| *r >= 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        rt,
                        scale["metadata"]["name"].as_str().unwrap_or_default(),
                        vec![vcluster_core::status::Cause::invalid(
                            "spec.replicas",
                            &scale["spec"]["replicas"].to_string(),
                            "must be greater than or equal to 0",
                        )],
                    )
                })?;
            let mut object = current.clone();
            let (spec_replicas, _) = replica_pointers(rt);
            let at = spec_replicas
                .split('/')
                .skip(1)
                .fold(&mut object, |at, segment| &mut at[segment]);
            *at = json!(replicas);
            // The resourceVersion the client sent (if any) guards the write.
            object["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
            Ok(object)
        },
    )
    .await?;
    Ok(to_scale(rt, &updated))
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

/// Binds a pod to a node (what a scheduler does): sets `spec.nodeName` once.
async fn bind(
    tenant: &Tenant,
    target: &Target,
    binding: &Value,
    params: &HashMap<String, String>,
) -> Result<Value> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("a Binding needs target.name"))?
        .to_owned();
    let name = target.name.clone().unwrap_or_default();
    update(tenant, target, UpdateScope::Main, params, false, |current| {
        if current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on pods/binding {name:?}: pod {name} is already assigned to node")));
        }
        let mut pod = current.clone();
        pod["spec"]["nodeName"] = json!(node);
        Ok(pod)
    })
    .await?;
    Ok(success())
}

/// `DeleteOptions` from the body (JSON with or without TypeMeta, or protobuf) or the query.
fn delete_options(
    headers: &http::HeaderMap,
    body: &[u8],
    params: &HashMap<String, String>,
) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let mut options = json!({});
        if let Some(p) = params.get("propagationPolicy") {
            options["propagationPolicy"] = json!(p);
        }
        if let Some(d) = params.get("dryRun") {
            options["dryRun"] = json!([d]);
        }
        return Ok(options);
    }
    decode_body(headers, body)
}

/// The finalizer through which the garbage collector carries out a deletion's
/// propagation policy: `Foreground` (dependents first) or `Orphan` (dependents kept).
/// `Background`, the default, needs none: dependents go after their owner.
fn propagation_finalizer(options: &Value) -> Option<&'static str> {
    match options["propagationPolicy"].as_str() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        None if options["orphanDependents"] == true => Some("orphan"),
        _ => None,
    }
}

pub(crate) async fn delete(tenant: &Tenant, target: &Target, options: &Value) -> Result<Value> {
    delete_at(tenant, target, options)
        .await
        .map(|(answer, _)| answer)
}

/// [`delete`], with the store revision the object was deleted or marked at (or last
/// written, when nothing was written).
pub(crate) async fn delete_at(
    tenant: &Tenant,
    target: &Target,
    options: &Value,
) -> Result<(Value, u64)> {
    let rt = &target.rt;
    let name = target.name.as_deref().expect("a named target");
    let dry = options["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    if rt.group.is_empty() && rt.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            rt,
            name,
            "this namespace may not be deleted",
        ));
    }
    for _ in 0..RETRIES {
        let (kv, mut current) = read(tenant, target, name).await?;
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && Some(uid) != meta_str(&current, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.qualified(),
                    meta_str(&current, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(rt, name));
        }
        if !object::is_deleting(&current)
            && let Some(finalizer) = propagation_finalizer(options)
        {
            object::add_finalizer(&mut current, finalizer);
        }
        if object::has_finalizers(rt, &current) {
            // Deletion waits for the finalizers' owners; the object is marked.
            if object::is_deleting(&current) || dry {
                return Ok((current, kv.mod_revision));
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(fresh().now);
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if rt.group.is_empty() && rt.kind == "Namespace" {
                marked["status"]["phase"] = json!("Terminating");
            }
            match tenant
                .store
                .update(
                    key(target, name),
                    encode(&marked),
                    Some(kv.mod_revision),
                    None,
                )
                .await
            {
                Ok(kv) => {
                    return Ok((
                        with_resource_version(marked, kv.mod_revision),
                        kv.mod_revision,
                    ));
                }
                Err(vcluster_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        if dry {
            return Ok((current, kv.mod_revision));
        }
        match tenant
            .store
            .delete(key(target, name), Some(kv.mod_revision))
            .await
        {
            Ok(deleted) => {
                let status = json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta_str(&current, "uid")},
                });
                return Ok((status, deleted.revision));
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

async fn delete_collection(
    tenant: &Tenant,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<Listed> {
    let listed = list(tenant, target, params).await?;
    let options = delete_options(&http::HeaderMap::new(), b"", params)?;
    let mut deleted = Vec::new();
    for item in listed.items {
        let name = meta_str(&item, "name").unwrap_or_default().to_owned();
        let one = Target {
            name: Some(name),
            namespace: meta_str(&item, "namespace").map(str::to_owned),
            ..target.clone()
        };
        match delete(tenant, &one, &options).await {
            Ok(_) => deleted.push(item),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Listed {
        items: deleted,
        encoded: None,
        metadata: listed.metadata,
    })
}
