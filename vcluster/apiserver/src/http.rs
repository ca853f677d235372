//! HTTP plumbing: the response body type, JSON and Status responses, bounded request bodies
//! and query parameters.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use vcluster_core::status::{ApiError, Reason};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A request's body, whatever it came from: a connection (hyper's `Incoming`) or the caller
/// of [`crate::handle`] (a test, a fuzz target).
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, BodyError>;

/// Any error a request body's source may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body could not be read. (A type of its own rather than [`BoxError`]: the
/// compiler cannot prove a request's future `Send` through the boxed error's conversions.)
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BodyError(pub(crate) BoxError);

/// The largest request body accepted (kube-apiserver's limit is 3 MiB for most requests).
pub(crate) const MAX_BODY: usize = 3 << 20;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// Server-side apply's patch type.
pub(crate) const APPLY: &str = "application/apply-patch+yaml";

pub(crate) fn json(code: StatusCode, value: &Value) -> Response<Body> {
    json_bytes(
        code,
        serde_json::to_vec(value).expect("a JSON value serializes"),
    )
}

/// `response` with a `Warning: 299 - "..."` header for each warning, as kube-apiserver
/// sends them (kubectl prints each as `Warning: ...`).
pub(crate) fn warned(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        let quoted = serde_json::to_string(warning).expect("a string serializes");
        if let Ok(value) = HeaderValue::from_bytes(format!("299 - {quoted}").as_bytes()) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

pub(crate) fn ok(value: &Value) -> Response<Body> {
    json(StatusCode::OK, value)
}

/// A failure as a `metav1.Status` response, in the bytes kube-apiserver would send: with a
/// `Retry-After` header when the Status asks the client to retry later, as upstream's
/// error writer adds it.
pub(crate) fn error(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_bytes(code, e.to_status_json());
    let retry_after = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64())
        .filter(|seconds| *seconds > 0);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A plain-text answer (the health probes').
pub(crate) fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Reads a request body of at most [`MAX_BODY`] bytes; more is a 413.
pub(crate) async fn read_body(body: RequestBody) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            413,
            Reason::RequestEntityTooLarge,
            format!("the request body is larger than the limit of {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// The query parameters (the last value of a repeated one wins).
pub(crate) fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The media type of a request body, without parameters, lowercased.
pub(crate) fn content_type(headers: &http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What shape a read answers in, from the `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Object,
    /// `as=Table;g=meta.k8s.io;v=v1` (or `v1beta1`): kubectl get's columns.
    Table,
    /// `as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`: metadata only.
    Metadata,
}

/// The first media range of `Accept` this server can answer; plain JSON otherwise.
pub(crate) fn shape(headers: &http::HeaderMap) -> Shape {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let meta_group = params.get("g") == Some(&"meta.k8s.io");
        match (params.get("as").copied(), params.get("v").copied()) {
            (Some("Table"), Some("v1" | "v1beta1")) if meta_group => return Shape::Table,
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("v1" | "v1beta1"),
            ) if meta_group => {
                return Shape::Metadata;
            }
            (None, _) if matches!(media, "application/json" | "*/*" | "application/*") => {
                return Shape::Object;
            }
            _ => {}
        }
    }
    Shape::Object
}

/// A JSON response from already encoded bytes.
pub(crate) fn json_bytes(code: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_written_as_kube_apiserver_writes_them() {
        let pods = vcluster_core::registry::find("", "v1", "pods").expect("pods");
        let response = error(&ApiError::not_found(&pods, "x"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(
            body,
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"pods \"x\" not found","reason":"NotFound","#,
                r#""details":{"name":"x","kind":"pods"},"code":404}"#,
                "\n"
            )
        );
    }
}
