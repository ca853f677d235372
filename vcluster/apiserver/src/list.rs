//! Lists: from the store at one snapshot (`limit`/`continue`), or from the watch cache for
//! a list at a resourceVersion; label and field selectors; and the shapes a client may ask
//! for (the objects, a Table, or metadata only).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::selector::{FieldSelector, LabelSelector};
use vcluster_core::status::ApiError;
use vcluster_store::RangeRequest;

use crate::cache::{CACHE_WAIT, WatchCache};
use crate::http::{Body, Shape, ok};
use crate::objects::{Result, in_version, now, store_error, too_large_resource_version};
use crate::router::Target;
use crate::stored;
use crate::tenant::Tenant;

/// A list in the shape the client asked for.
pub(crate) fn shaped_list(rt: &ResourceType, shape: Shape, list: Listed) -> Response<Body> {
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
                let served = |o: &Arc<Value>| Arc::new(in_version(rt, (**o).clone()));
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
        Shape::Object => in_version(rt, object),
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

    /// Whether every object matches: only then is a count of the rest exact.
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
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

/// An integer query parameter (`limit`, `timeoutSeconds`), read as kube-apiserver decodes
/// it (Go's `strconv.ParseInt`, and its words when that fails: a 400).
pub(crate) fn integer(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    text.parse::<i64>().map(Some).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        ApiError::bad_request(format!("strconv.ParseInt: parsing {text:?}: {why}"))
    })
}

/// `timeoutSeconds`: `None` when absent or 0 (the server's default then applies). Upstream
/// takes a negative value as a deadline already passed (the watch ends at once, and a
/// client's reflector comes straight back for another); it is refused here instead, so that
/// a client bug cannot turn into a busy loop of watches.
pub(crate) fn timeout_seconds(params: &HashMap<String, String>) -> Result<Option<u64>> {
    match integer(params, "timeoutSeconds")? {
        None | Some(0) => Ok(None),
        Some(seconds) => u64::try_from(seconds).map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid timeoutSeconds {seconds}: must be greater than or equal to 0"
            ))
        }),
    }
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
pub(crate) struct Listed {
    pub items: Vec<Arc<Value>>,
    /// The items' JSON, where the watch cache already has it.
    pub encoded: Option<Vec<Bytes>>,
    pub metadata: Value,
}

pub(crate) async fn list(
    tenant: &Tenant,
    target: &Target,
    params: &HashMap<String, String>,
) -> Result<Listed> {
    let rt = &target.rt;
    let selectors = Selectors::parse(rt, params)?;
    let prefix = registry::storage_prefix(rt, target.namespace.as_deref());
    // A limit of 0 or less is no limit, as upstream reads it.
    let limit = integer(params, "limit")?
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| *l > 0);
    // Checked as upstream checks it, though a list does not last long enough to need it.
    timeout_seconds(params)?;
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
            let matching = params.get("resourceVersionMatch").map(String::as_str);
            // A limited list at a resourceVersion without a match rule is read at exactly
            // that revision, upstream's legacy meaning.
            let exact = matching == Some("Exact")
                || (matching.is_none_or(str::is_empty)
                    && limit.is_some()
                    && requested.is_some_and(|rv| rv > 0));
            if let Some(at_least) = requested.filter(|_| !exact) {
                // Any state at least as new as `at_least` will do: the watch cache answers,
                // as kube-apiserver's does. At 0 it answers everything it has, whatever the
                // limit, as upstream's does.
                let limit = limit.filter(|_| at_least > 0);
                return list_from_cache(tenant, target, &selectors, &prefix, at_least, limit).await;
            }
            // A resourceVersion of "" asks for the current state: the watch cache answers
            // once it holds every change committed before the list, as upstream's does
            // (`ConsistentListFromCache`), else the store.
            if requested.is_none()
                && matching.is_none_or(str::is_empty)
                && let Some((cache, current)) =
                    tenant.consistent_cache(rt).await.map_err(store_error)?
            {
                return Ok(cached_page(&cache, &selectors, &prefix, limit, current));
            }
            (None, requested.filter(|rv| exact && *rv > 0))
        }
    };
    let chunk = limit.map_or(1000, |l| l.clamp(1, 1000));
    // How many objects follow a page is known exactly only when every object is selected
    // (upstream's rule for `remainingItemCount`).
    let counted = limit.is_some() && selectors.is_empty();
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
                count_remaining: counted,
            })
            .await
            .map_err(store_error)?;
        revision = Some(page.revision);
        let count = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            if let Some(object) = stored::readable(kv)
                && selectors.matches(&object)
            {
                items.push(Arc::new(object));
            }
            if limit.is_some_and(|l| items.len() >= l) {
                if i + 1 < count || page.more {
                    let remaining = (count - i - 1) as u64 + page.remaining;
                    next = Some((encode_continue(page.revision, &kv.key), remaining));
                }
                break 'pages;
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => after = Some(last.key.clone()),
            _ => break,
        }
    }
    let metadata = list_metadata(
        revision.unwrap_or(0),
        next.map(|(token, remaining)| (token, counted.then_some(remaining))),
    );
    Ok(Listed {
        items,
        encoded: None,
        metadata,
    })
}

/// A list's `metadata`: its revision and, when more follows, the continue token and (when
/// known exactly) how many objects follow.
fn list_metadata(revision: u64, next: Option<(String, Option<u64>)>) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some((token, remaining)) = next {
        metadata["continue"] = json!(token);
        if let Some(remaining) = remaining {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    metadata
}

/// How long a client told "too large resource version" is told to wait before it tries
/// again (upstream's 1 s).
const CACHE_RETRY_AFTER: u32 = 1;

async fn list_from_cache(
    tenant: &Tenant,
    target: &Target,
    selectors: &Selectors,
    prefix: &str,
    at_least: u64,
    limit: Option<usize>,
) -> Result<Listed> {
    let rt = &target.rt;
    // A cache started for this list starts at the latest state (which a future revision
    // is not yet part of): it is waited for below.
    let cache = tenant.cache(rt, 0).await.map_err(store_error)?;
    // A revision the cache has not seen yet is waited for, as upstream does, then answered
    // "too large resource version".
    if let Err(current) = cache.wait_for(at_least, CACHE_WAIT).await {
        return Err(too_large_resource_version(
            at_least,
            current,
            CACHE_RETRY_AFTER,
        ));
    }
    Ok(cached_page(&cache, selectors, prefix, limit, at_least))
}

/// A page of what `cache` holds under `prefix`, at its revision or `at_least` (of which
/// its objects are the state) if that is later.
fn cached_page(
    cache: &WatchCache,
    selectors: &Selectors,
    prefix: &str,
    limit: Option<usize>,
    at_least: u64,
) -> Listed {
    let (objects, revision) = cache.snapshot(prefix.as_bytes());
    let revision = revision.max(at_least);
    let total = objects.len();
    let mut selected = objects
        .into_iter()
        .filter(|(_, cached)| selectors.matches(&cached.object));
    let page: Vec<_> = selected
        .by_ref()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let next = match (limit, page.last()) {
        (Some(limit), Some((last, _))) if selected.next().is_some() => {
            let remaining = selectors.is_empty().then(|| (total - limit) as u64);
            Some((encode_continue(revision, last), remaining))
        }
        _ => None,
    };
    let (items, encoded) = page
        .into_iter()
        .map(|(_, cached)| (cached.object, cached.encoded))
        .unzip();
    Listed {
        items,
        encoded: Some(encoded),
        metadata: list_metadata(revision, next),
    }
}
