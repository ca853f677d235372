//! API errors and the `metav1.Status` bodies that carry them, in kube-apiserver's wording.

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

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
