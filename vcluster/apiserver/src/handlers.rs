//! The HTTP handlers of resources: a request's verb, collection or object, and
//! subresource decide what it is (get, list, watch, create, update, patch, delete,
//! deletecollection, and the `status`, `scale`, `binding`, `eviction`, `finalize` and
//! `token` subresources); its query and body become the typed options and objects of the
//! write path (`write.rs`) and the lists of `list.rs`.

use std::collections::HashMap;

use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use vcluster_core::object::{UpdateScope, meta_str};
use vcluster_core::registry::ResourceType;
use vcluster_core::status::{ApiError, Cause, Reason, success_json};

use crate::http::{
    APPLY, Body, RequestBody, Shape, content_type, error, json as respond, json_bytes, ok, query,
    read_body, shape, warned,
};
use crate::list::{self, Listed, shaped_list, shaped_object};
use crate::objects::{DeleteParams, FieldValidation, Requester, Result, WriteParams, get};
use crate::router::Target;
use crate::tenant::Tenant;
use crate::write::{self, Deleted, Update, apply_patch, conditional_patch, parse_patch};
use crate::{User, accounts, crds, reviews, watch};

pub(crate) async fn handle(
    tenant: &Tenant,
    user: &User,
    target: Target,
    req: Request<RequestBody>,
) -> Response<Body> {
    match dispatch(tenant, user, target, req).await {
        Ok(response) => response,
        Err(e) => {
            if e.code >= 500 {
                let cause = e.source.as_ref().map(|s| s.to_string());
                tracing::error!(error = %e, cause, "request failed");
            }
            error(&e)
        }
    }
}

/// The options of a write from its query: `dryRun`, `fieldManager` (else the client's name
/// from its User-Agent), `fieldValidation`, `force`.
fn write_params(params: &HashMap<String, String>, headers: &http::HeaderMap) -> WriteParams {
    WriteParams {
        dry_run: params.get("dryRun").is_some_and(|v| v == "All"),
        field_manager: field_manager(params, headers),
        field_validation: match params.get("fieldValidation").map(String::as_str) {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        },
        force: is_true(params.get("force")),
    }
}

async fn dispatch(
    tenant: &Tenant,
    user: &User,
    target: Target,
    req: Request<RequestBody>,
) -> Result<Response<Body>> {
    let params = query(req.uri());
    let method = req.method().clone();
    let headers = req.headers().clone();
    if content_type(&headers) == APPLY && !params.contains_key("fieldManager") {
        return Err(ApiError::invalid_kind(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let who = Requester::User(user);
    let writing = write_params(&params, &headers);
    let sub = target.subresource.as_deref();
    let collection = target.name.is_none();
    if reviews::is_review(&target.rt) {
        // Questions, answered and never stored: only create is served.
        if method != Method::POST || !collection {
            return Err(ApiError::new(
                405,
                Reason::MethodNotAllowed,
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
            let listed = list::list(tenant, &target, &params).await?;
            Ok(shaped_list(&target.rt, shape(&headers), listed))
        }
        (Method::GET, false, None | Some("status")) => {
            let object = get(tenant, &target).await?;
            Ok(ok(&shaped_object(&target.rt, shape(&headers), object)))
        }
        (Method::POST, true, None) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            let created = write::create(tenant, who, &target, body, &writing).await?;
            settled(tenant, &target.rt, revision_of(&created.object)).await?;
            Ok(warned(
                respond(StatusCode::CREATED, &created.object),
                &created.warnings,
            ))
        }
        (Method::PUT, false, None | Some("status" | "finalize")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            let how = Update {
                scope: write::scope(sub),
                conditional: has_resource_version(&body),
            };
            let change = |_: &Value| Ok(body.clone());
            let updated = write::update(tenant, who, &target, how, &writing, change).await?;
            settled(tenant, &target.rt, revision_of(&updated.object)).await?;
            Ok(warned(ok(&updated.object), &updated.warnings))
        }
        (Method::PATCH, false, None | Some("status")) => {
            let kind = content_type(&headers);
            let patch = read_body(req.into_body()).await?;
            let patched = write::patch(tenant, who, &target, &kind, &patch, &writing).await?;
            settled(tenant, &target.rt, revision_of(&patched.object)).await?;
            Ok(warned(ok(&patched.object), &patched.warnings))
        }
        (Method::DELETE, false, None) => {
            let body = read_body(req.into_body()).await?;
            let options = delete_options(&headers, &body, &params)?;
            let deleted = write::delete(tenant, &target, &options).await?;
            settled(tenant, &target.rt, deleted.revision()).await?;
            Ok(deleted_answer(&target.rt, deleted))
        }
        (Method::DELETE, true, None) => {
            let (deleted, revision) = delete_collection(tenant, &target, &params).await?;
            settled(tenant, &target.rt, revision).await?;
            Ok(shaped_list(&target.rt, Shape::Object, deleted))
        }
        (Method::GET, false, Some("scale")) => scale(tenant, who, &target, None, &writing)
            .await
            .map(|v| ok(&v)),
        (Method::PUT, false, Some("scale")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            scale(tenant, who, &target, Some(("PUT", body)), &writing)
                .await
                .map(|v| ok(&v))
        }
        (Method::PATCH, false, Some("scale")) => {
            let media = content_type(&headers);
            let patch = parse_patch(&read_body(req.into_body()).await?)?;
            scale(tenant, who, &target, Some((&media, patch)), &writing)
                .await
                .map(|v| ok(&v))
        }
        (Method::POST, false, Some("binding")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            bind(tenant, who, &target, &body, &writing)
                .await
                .map(|()| success())
        }
        (Method::POST, false, Some("token")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            accounts::token_request(tenant, &target, &body)
                .await
                .map(|v| respond(StatusCode::CREATED, &v))
        }
        (
            Method::GET | Method::POST,
            false,
            Some(sub @ ("log" | "exec" | "attach" | "portforward")),
        ) => match crate::kubelet::connect(tenant, &target, sub, &params).await {
            Err(e) => Err(e),
            Ok(never) => match never {},
        },
        (Method::POST, false, Some("eviction")) => {
            let body = decode_body(&headers, &read_body(req.into_body()).await?)?;
            let options = body
                .get("deleteOptions")
                .cloned()
                .unwrap_or_else(|| json!({}));
            write::delete(tenant, &target, &DeleteParams::from_options(&options)?).await?;
            Ok(success())
        }
        (method, _, _) => Err(ApiError::new(
            405,
            Reason::MethodNotAllowed,
            format!("{method} is not supported on this path"),
        )),
    }
}

/// The resources whose registry answers a DELETE with the deleted object
/// (`ReturnDeletedObject: true` in kube-apiserver's stores); the others answer a `Status`.
const RETURN_DELETED_OBJECT: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumes"),
    ("", "persistentvolumeclaims"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "namespaces"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceclaims"),
    ("resource.k8s.io", "resourceclaimtemplates"),
    ("resource.k8s.io", "resourceslices"),
];

/// What a DELETE answers: the object while finalizers hold it; once it is gone, the object
/// as it was for the resources upstream returns it for, a `Status` for the others.
fn deleted_answer(rt: &ResourceType, deleted: Deleted) -> Response<Body> {
    match deleted {
        Deleted::Held { object, .. } => ok(&object),
        Deleted::Gone { last, .. }
            if RETURN_DELETED_OBJECT.contains(&(rt.group.as_str(), rt.plural.as_str())) =>
        {
            ok(&last)
        }
        Deleted::Gone { last, .. } => {
            let details = json!({
                "name": meta_str(&last, "name"),
                "group": rt.group,
                "kind": rt.plural,
                "uid": meta_str(&last, "uid"),
            });
            json_bytes(StatusCode::OK, success_json(Some(&details), 0))
        }
    }
}

/// A write of a CRD is answered once the tenant's types include it (its CRD cache has
/// reached the write's revision), so that the client can use its resources at once.
async fn settled(tenant: &Tenant, rt: &ResourceType, revision: u64) -> Result<()> {
    if crds::is_crd(rt) {
        crds::settle(tenant, revision).await?;
    }
    Ok(())
}

/// The store revision an object was written at (its resourceVersion).
fn revision_of(object: &Value) -> u64 {
    meta_str(object, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn is_true(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

fn has_resource_version(body: &Value) -> bool {
    meta_str(body, "resourceVersion").is_some_and(|rv| !rv.is_empty())
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
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            ),
        )),
    }
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
    who: Requester<'_>,
    target: &Target,
    change: Option<(&str, Value)>,
    params: &WriteParams,
) -> Result<Value> {
    let rt = &target.rt;
    let Some((media, body)) = change else {
        return Ok(to_scale(rt, &get(tenant, target).await?));
    };
    let how = Update {
        scope: UpdateScope::Main,
        conditional: conditional_patch(&body),
    };
    let updated = write::update(tenant, who, target, how, params, |current| {
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
                    vec![Cause::invalid(
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
    })
    .await?;
    Ok(to_scale(rt, &updated.object))
}

/// The `201` Success Status a binding or an eviction answers.
fn success() -> Response<Body> {
    json_bytes(StatusCode::CREATED, success_json(None, 201))
}

/// Binds a pod to a node (what a scheduler does): sets `spec.nodeName` once.
async fn bind(
    tenant: &Tenant,
    who: Requester<'_>,
    target: &Target,
    binding: &Value,
    params: &WriteParams,
) -> Result<()> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("a Binding needs target.name"))?
        .to_owned();
    let name = target.name.clone().unwrap_or_default();
    let how = Update::of(UpdateScope::Main);
    write::update(tenant, who, target, how, params, |current| {
        if current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            return Err(ApiError::new(409, Reason::Conflict, format!("Operation cannot be fulfilled on pods/binding {name:?}: pod {name} is already assigned to node")));
        }
        let mut pod = current.clone();
        pod["spec"]["nodeName"] = json!(node);
        Ok(pod)
    })
    .await?;
    Ok(())
}

/// `DeleteOptions` from the body (JSON with or without TypeMeta, or protobuf) or the query.
fn delete_options(
    headers: &http::HeaderMap,
    body: &[u8],
    params: &HashMap<String, String>,
) -> Result<DeleteParams> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let mut options = json!({});
        if let Some(p) = params.get("propagationPolicy") {
            options["propagationPolicy"] = json!(p);
        }
        if let Some(d) = params.get("dryRun") {
            options["dryRun"] = json!([d]);
        }
        if let Some(g) = params.get("gracePeriodSeconds") {
            let grace: i64 = g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}: not an integer"))
            })?;
            options["gracePeriodSeconds"] = json!(grace);
        }
        return DeleteParams::from_options(&options);
    }
    DeleteParams::from_options(&decode_body(headers, body)?)
}

/// Deletes what a list selects; what was deleted, and the revision of the last delete.
async fn delete_collection(
    tenant: &Tenant,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<(Listed, u64)> {
    let listed = list::list(tenant, target, params).await?;
    let options = delete_options(&http::HeaderMap::new(), b"", params)?;
    let mut deleted = Vec::new();
    let mut revision = 0;
    for item in listed.items {
        let name = meta_str(&item, "name").unwrap_or_default().to_owned();
        let one = Target {
            name: Some(name),
            namespace: meta_str(&item, "namespace").map(str::to_owned),
            ..target.clone()
        };
        match write::delete(tenant, &one, &options).await {
            Ok(done) => {
                revision = revision.max(done.revision());
                deleted.push(item);
            }
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    let listed = Listed {
        items: deleted,
        encoded: None,
        metadata: listed.metadata,
    };
    Ok((listed, revision))
}
