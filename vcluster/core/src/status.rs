//! API errors and the `metav1.Status` bodies that carry them, in kube-apiserver's wording.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::registry::ResourceType;

/// One reason an object is invalid: `field` is the JSON path (`metadata.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message: if detail.is_empty() {
                "Required value".to_owned()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    /// An invalid value of any JSON type, rendered as upstream renders it (strings quoted,
    /// numbers and booleans bare).
    pub fn invalid_value(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }

    /// A value of the wrong JSON type.
    pub fn type_invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self {
            reason: "FieldValueTypeInvalid",
            ..Self::invalid_value(field, value, detail)
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    fn render(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A value as Go's `%#v`-like rendering in field errors shows it.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_owned(),
        Value::Array(_) => "\"array\"".to_owned(),
        other => other.to_string(),
    }
}

/// Why a request failed, as `metav1.StatusReason` names it: what callers match on (a
/// lost race is `Conflict`, a name taken `AlreadyExists`), never the HTTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    AlreadyExists,
    Conflict,
    /// 410: a resourceVersion older than the store keeps.
    Expired,
    Gone,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    Invalid,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
    /// No reason given (`""`): what upstream answers for an error it has no kind for,
    /// such as a failed dial to a kubelet.
    Unknown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Expired => "Expired",
            Self::Gone => "Gone",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::Invalid => "Invalid",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Timeout => "Timeout",
            Self::Unknown => "",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What lies behind an error the API answers (a storage failure, say), kept for the log.
pub type Source = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// A failed API request: an HTTP status code and the Status body for it, and (for the log
/// only, never the client) the error that caused it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: Reason,
    pub message: String,
    pub details: Option<Value>,
    #[source]
    pub source: Option<Source>,
}

/// Two errors are the same answer if the client would see the same Status.
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        (self.code, self.reason, &self.message, &self.details)
            == (other.code, other.reason, &other.message, &other.details)
    }
}

impl Eq for ApiError {}

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            source: None,
        }
    }

    /// The same answer, with the error behind it kept for the log.
    pub fn caused_by(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Some(std::sync::Arc::new(source)),
            ..self
        }
    }

    pub fn is(&self, reason: Reason) -> bool {
        self.reason == reason
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                404,
                Reason::NotFound,
                format!("{} {name:?} not found", rt.qualified()),
            )
        }
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                409,
                Reason::AlreadyExists,
                format!("{} {name:?} already exists", rt.qualified()),
            )
        }
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
             please apply your changes to the latest version and try again",
            rt.qualified()
        );
        Self {
            details: Some(details(rt, name)),
            ..Self::new(409, Reason::Conflict, message)
        }
    }

    /// 403: `resource.group "name" is forbidden: <why>` (an empty name is left out).
    pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> Self {
        let what = if name.is_empty() {
            rt.qualified()
        } else {
            format!("{} {name:?}", rt.qualified())
        };
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                403,
                Reason::Forbidden,
                format!("{what} is forbidden: {why}"),
            )
        }
    }

    /// 422: `Kind.group "name" is invalid: <causes>`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(&rt.group, &rt.kind, name, causes)
    }

    /// 422 for an object of `group`/`kind`, which need not be a stored resource (a
    /// subresource's request object such as `TokenRequest`).
    pub fn invalid_kind(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let list = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self {
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            ..Self::new(
                422,
                Reason::Invalid,
                format!("{qualified} {name:?} is invalid: {list}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, Reason::BadRequest, message)
    }

    /// 410 for a watch or read from a compacted revision.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, Reason::Expired, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, Reason::InternalError, message)
    }

    /// The `metav1.Status` body, as a JSON value (for a watch's `ERROR` event).
    pub fn to_status(&self) -> Value {
        serde_json::to_value(self.status()).expect("a Status serializes")
    }

    /// The `metav1.Status` body byte for byte as kube-apiserver writes it: Go's field order
    /// and escaping, then the newline that Go's JSON encoder ends each value with.
    pub fn to_status_json(&self) -> Vec<u8> {
        self.status().encode()
    }

    fn status(&self) -> Status<'_> {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: &self.message,
            reason: self.reason.as_str(),
            // The details are written (by this crate and the API server) with the field
            // names of `StatusDetails`, so they read back; any other field would be dropped,
            // as Go's decoder would drop it.
            details: self
                .details
                .as_ref()
                .and_then(|details| StatusDetails::deserialize(details).ok()),
            code: self.code,
        }
    }
}

/// A `Success` Status (what a DELETE of most resources, a binding and an eviction answer),
/// in the bytes kube-apiserver writes: `details` in `StatusDetails`' fields, `code` left out
/// when 0.
pub fn success_json(details: Option<&Value>, code: u16) -> Vec<u8> {
    Status {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Success",
        message: "",
        reason: "",
        details: details.and_then(|d| StatusDetails::deserialize(d).ok()),
        code,
    }
    .encode()
}

impl Status<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoEscapes);
        self.serialize(&mut serializer)
            .expect("a Status serializes");
        out.push(b'\n');
        out
    }
}

/// `metav1.Status` in the order Go's encoder writes it: `TypeMeta`'s fields, `metadata`
/// (a `ListMeta`, which `omitempty` never drops since it is a struct), then the Status's
/// own fields, each `omitempty`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

/// `{}`: the Status's `ListMeta`, whose fields are all empty in an error.
#[derive(Serialize)]
struct Empty {}

/// `metav1.StatusDetails`, every field `omitempty` (so the core group's empty `group` is
/// left out), in Go's order.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<StatusCause>,
    #[serde(skip_serializing_if = "is_zero")]
    retry_after_seconds: u32,
}

/// `metav1.StatusCause`: Go names its `Type` field `reason` in JSON.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct StatusCause {
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// serde_json's compact output, with the escapes Go's `encoding/json` adds by default: `<`,
/// `>` and `&` (so JSON can sit in HTML) and U+2028 and U+2029 (line separators to
/// JavaScript). Both escape the rest alike (quotes, backslashes, control characters in
/// lowercase `\u00xx` or their short forms).
struct GoEscapes;

impl serde_json::ser::Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut written = 0;
        for (at, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[written..at])?;
            writer.write_all(escape.as_bytes())?;
            written = at + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[written..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_statuses_are_kube_apiservers_bytes() {
        let details = json!({"name": "c", "group": "", "kind": "configmaps", "uid": "u1"});
        assert_eq!(
            String::from_utf8(success_json(Some(&details), 0)).expect("utf-8"),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\",\"details\":{\"name\":\"c\",\"kind\":\"configmaps\",\"uid\":\"u1\"}}\n"
        );
        assert_eq!(
            String::from_utf8(success_json(None, 201)).expect("utf-8"),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\",\"code\":201}\n"
        );
    }
    use crate::registry::find;

    #[test]
    fn messages_read_like_kube_apiservers() {
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(
            ApiError::not_found(deploy, "web").message,
            r#"deployments.apps "web" not found"#
        );
        let cm = &find("", "v1", "configmaps").expect("configmaps");
        let e = ApiError::invalid(
            cm,
            "Bad",
            vec![Cause::invalid("metadata.name", "Bad", "must be lowercase")],
        );
        assert_eq!(
            e.message,
            r#"ConfigMap "Bad" is invalid: metadata.name: Invalid value: "Bad": must be lowercase"#
        );
        let status = e.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    }

    /// What kube-apiserver writes, as text.
    fn body(e: &ApiError) -> String {
        String::from_utf8(e.to_status_json()).expect("UTF-8")
    }

    // The expected bodies are written out from upstream's types (k8s.io/apimachinery
    // pkg/apis/meta/v1/types.go: Status, StatusDetails, StatusCause), its constructors
    // (pkg/api/errors/errors.go: NewNotFound, NewAlreadyExists, NewInvalid) and Go's
    // encoding/json Encoder, which kube-apiserver's JSON serializer uses.
    #[test]
    fn errors_are_byte_for_byte_kube_apiservers() {
        let pods = &find("", "v1", "pods").expect("pods");
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        let invalid = ApiError::invalid(
            deploy,
            "web",
            vec![
                Cause::invalid_value(
                    "spec.replicas",
                    &json!(-1),
                    "must be greater than or equal to 0",
                ),
                Cause::required("spec.selector", ""),
            ],
        );
        let table = [
            (
                ApiError::not_found(pods, "x"),
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"pods \"x\" not found","reason":"NotFound","#,
                    r#""details":{"name":"x","kind":"pods"},"code":404}"#,
                    "\n"
                ),
            ),
            (
                ApiError::already_exists(deploy, "web"),
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"deployments.apps \"web\" already exists","#,
                    r#""reason":"AlreadyExists","#,
                    r#""details":{"name":"web","group":"apps","kind":"deployments"},"#,
                    r#""code":409}"#,
                    "\n"
                ),
            ),
            (
                invalid,
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"Deployment.apps \"web\" is invalid: ["#,
                    r#"spec.replicas: Invalid value: -1: must be greater than or equal to 0, "#,
                    r#"spec.selector: Required value]","reason":"Invalid","#,
                    r#""details":{"name":"web","group":"apps","kind":"Deployment","causes":["#,
                    r#"{"reason":"FieldValueInvalid","#,
                    r#""message":"Invalid value: -1: must be greater than or equal to 0","#,
                    r#""field":"spec.replicas"},"#,
                    r#"{"reason":"FieldValueRequired","message":"Required value","#,
                    r#""field":"spec.selector"}"#,
                    r#"]},"code":422}"#,
                    "\n"
                ),
            ),
            // Without details there is no `details` key at all, as Go omits a nil pointer.
            (
                ApiError::bad_request("no"),
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"no","reason":"BadRequest","code":400}"#,
                    "\n"
                ),
            ),
        ];
        for (error, expected) in &table {
            assert_eq!(body(error), *expected, "{}", error.reason);
        }
    }

    #[test]
    fn every_detail_is_in_gos_order_and_html_is_escaped_as_go_does() {
        let e = ApiError {
            details: Some(json!({
                "retryAfterSeconds": 5,
                "causes": [{"field": "f", "message": "m", "reason": "r"}],
                "uid": "u",
                "kind": "k",
                "group": "g",
                "name": "n",
            })),
            ..ApiError::new(429, Reason::TooManyRequests, "a <b> & c\u{2028}\"\\\n\u{1}")
        };
        assert_eq!(
            body(&e),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"a \u003cb\u003e \u0026 c\u2028\"\\\n\u0001","reason":"TooManyRequests","#,
                r#""details":{"name":"n","group":"g","kind":"k","uid":"u","#,
                r#""causes":[{"reason":"r","message":"m","field":"f"}],"retryAfterSeconds":5},"#,
                r#""code":429}"#,
                "\n"
            )
        );
    }
}
