//! The review APIs: questions asked by POSTing an object, answered in its `status`, never
//! stored. `SelfSubjectAccessReview` (`kubectl auth can-i`), `SelfSubjectRulesReview`
//! (`kubectl auth can-i --list`), `SubjectAccessReview`, `SelfSubjectReview`
//! (`kubectl auth whoami`) and `TokenReview`.

use serde_json::{Value, json};
use vcluster_core::object::strings;
use vcluster_core::rbac::Attributes;
use vcluster_core::registry::ResourceType;
use vcluster_core::status::ApiError;

use crate::User;
use crate::objects::Result;
use crate::tenant::Tenant;
use crate::{accounts, authz};

/// Whether `rt` is a review type.
pub(crate) fn is_review(rt: &ResourceType) -> bool {
    matches!(
        rt.gk(),
        (
            "authorization.k8s.io",
            "SelfSubjectAccessReview" | "SelfSubjectRulesReview" | "SubjectAccessReview"
        ) | ("authentication.k8s.io", "SelfSubjectReview" | "TokenReview")
    )
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// The attributes a review's spec asks about.
fn attributes(spec: &Value) -> Attributes {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Attributes {
            verb: text(r, "verb"),
            api_group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
            path: None,
        };
    }
    let n = &spec["nonResourceAttributes"];
    Attributes {
        verb: text(n, "verb"),
        path: Some(text(n, "path")),
        ..Attributes::default()
    }
}

fn user_info(user: &User) -> Value {
    json!({"username": user.name, "groups": user.groups})
}

/// Answers a review `body` of type `rt` asked by `user`.
pub(crate) async fn answer(
    tenant: &Tenant,
    user: &User,
    rt: &ResourceType,
    body: Value,
) -> Result<Value> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match rt.kind.as_str() {
        "SelfSubjectAccessReview" => {
            let allowed = authz::allowed(tenant, user, &attributes(&spec)).await?;
            json!({"allowed": allowed})
        }
        "SubjectAccessReview" => {
            let asked = User {
                name: text(&spec, "user"),
                groups: strings(&spec, "/groups"),
            };
            let allowed = authz::allowed(tenant, &asked, &attributes(&spec)).await?;
            json!({"allowed": allowed})
        }
        "SelfSubjectRulesReview" => {
            let namespace = text(&spec, "namespace");
            let rules = authz::rules(tenant, user, &namespace).await?;
            let (non_resource, resource): (Vec<_>, Vec<_>) =
                rules.iter().partition(|r| !r.non_resource_urls.is_empty());
            json!({
                "resourceRules": resource.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
                "nonResourceRules": non_resource.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
                "incomplete": false,
            })
        }
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "TokenReview" => {
            let token = text(&spec, "token");
            let issuer = tenant.identity.tokens.issuer().to_owned();
            let mut audiences = strings(&spec, "/audiences");
            if audiences.is_empty() {
                audiences.push(issuer);
            }
            match accounts::authenticate_for(tenant, &token, &audiences).await {
                Some((who, audiences)) => json!({
                    "authenticated": true,
                    "user": user_info(&who),
                    "audiences": audiences,
                }),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        other => {
            return Err(ApiError::internal(format!("{other} is not a review")));
        }
    };
    let mut out = body;
    out["apiVersion"] = json!(rt.api_version());
    out["kind"] = json!(rt.kind);
    out["status"] = status;
    Ok(out)
}
