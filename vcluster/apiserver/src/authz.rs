//! Authorization: every request's attributes checked against the tenant's RBAC policy.
//!
//! The policy is built from the tenant's watch caches of roles and bindings and rebuilt
//! only when one of them changes; `system:masters` (the tenant admin) is allowed without
//! reading it, so a tenant whose only user is its admin never starts those caches.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};
use vcluster_core::rbac::{self, Attributes, Policy, Subject};
use vcluster_core::registry;
use vcluster_core::status::{ApiError, Reason};

use crate::User;
use crate::objects::{Result, store_error};
use crate::router::Target;
use crate::tenant::Tenant;

/// The RBAC types, looked up once: every evaluated request reads their caches.
static RBAC_TYPES: std::sync::LazyLock<Vec<Arc<registry::ResourceType>>> =
    std::sync::LazyLock::new(|| {
        [
            "clusterroles",
            "roles",
            "clusterrolebindings",
            "rolebindings",
        ]
        .into_iter()
        .map(|plural| registry::find("rbac.authorization.k8s.io", "v1", plural).expect("built in"))
        .collect()
    });

/// The tenant's policy as of its latest roles and bindings.
pub(crate) async fn policy(tenant: &Tenant) -> Result<Arc<Policy>> {
    let mut caches = Vec::new();
    for rt in RBAC_TYPES.iter() {
        caches.push(tenant.cache(rt, 0).await.map_err(store_error)?);
    }
    let revisions: Vec<u64> = caches.iter().map(|c| c.revision()).collect();
    if let Some(policy) = tenant.current_policy(&revisions) {
        return Ok(policy);
    }
    let objects: Vec<Vec<Arc<Value>>> = caches
        .iter()
        .map(|c| {
            c.snapshot(b"")
                .0
                .into_iter()
                .map(|(_, c)| c.object)
                .collect()
        })
        .collect();
    let of = |i: usize| objects[i].iter().map(|o| &**o);
    let policy = Arc::new(Policy::new(of(0), of(1), of(2), of(3)));
    tenant.set_policy(revisions, policy.clone());
    Ok(policy)
}

/// The RBAC verb of a request on a resource.
fn verb(method: &Method, target: &Target, params: &HashMap<String, String>) -> &'static str {
    let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    match (method, target.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// The attributes of a request on a resource.
pub(crate) fn resource_attributes(
    method: &Method,
    target: &Target,
    params: &HashMap<String, String>,
) -> Attributes {
    Attributes {
        verb: verb(method, target, params).into(),
        api_group: target.rt.group.clone(),
        resource: target.rt.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        path: None,
    }
}

/// The attributes of a request for anything but a resource (discovery, OpenAPI).
pub(crate) fn path_attributes(method: &Method, path: &str) -> Attributes {
    Attributes {
        verb: method.as_str().to_lowercase(),
        path: Some(path.to_owned()),
        ..Attributes::default()
    }
}

fn subject(user: &User) -> Subject<'_> {
    Subject {
        user: &user.name,
        groups: &user.groups,
    }
}

/// Whether `user` may do `what` in this tenant.
pub(crate) async fn allowed(tenant: &Tenant, user: &User, what: &Attributes) -> Result<bool> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(true);
    }
    Ok(policy(tenant).await?.allows(&subject(user), what))
}

/// Allowed, or the 403 kube-apiserver would give.
pub(crate) async fn authorize(tenant: &Tenant, user: &User, what: &Attributes) -> Result<()> {
    if allowed(tenant, user, what).await? {
        return Ok(());
    }
    tracing::debug!(user = %user.name, verb = %what.verb, resource = %what.resource, namespace = %what.namespace, "forbidden");
    let details = (what.path.is_none())
        .then(|| json!({"name": what.name, "group": what.api_group, "kind": what.resource}));
    Err(ApiError {
        details,
        ..ApiError::new(
            403,
            Reason::Forbidden,
            rbac::forbidden_message(&user.name, what),
        )
    })
}

/// The rules `user` has in `namespace` (SelfSubjectRulesReview).
pub(crate) async fn rules(
    tenant: &Tenant,
    user: &User,
    namespace: &str,
) -> Result<Vec<rbac::Rule>> {
    let policy = if user.groups.iter().any(|g| g == "system:masters") {
        Arc::new(Policy::default())
    } else {
        policy(tenant).await?
    };
    Ok(policy.rules(&subject(user), namespace))
}

/// The user a request acts as: the authenticated one, or whom its `Impersonate-User` and
/// `Impersonate-Group` headers name, if the authenticated user may impersonate them (the
/// `impersonate` verb on `users`, `serviceaccounts` and `groups`, as upstream).
pub(crate) async fn impersonate(
    tenant: &Tenant,
    user: User,
    headers: &http::HeaderMap,
) -> Result<User> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let groups = values("impersonate-group");
    let Some(name) = values("impersonate-user").into_iter().next() else {
        if groups.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::bad_request(format!(
            "requested {groups:?} without impersonating a user"
        )));
    };
    let ask = |resource: &str, namespace: &str, name: &str| Attributes {
        verb: "impersonate".into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Attributes::default()
    };
    let account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    let mut asks = vec![match account {
        Some((ns, sa)) => ask("serviceaccounts", ns, sa),
        None => ask("users", "", &name),
    }];
    asks.extend(groups.iter().map(|g| ask("groups", "", g)));
    for what in &asks {
        authorize(tenant, &user, what).await?;
    }
    let mut as_groups = groups;
    if as_groups.is_empty()
        && let Some((ns, _)) = account
    {
        as_groups.push("system:serviceaccounts".into());
        as_groups.push(format!("system:serviceaccounts:{ns}"));
    }
    if !as_groups.iter().any(|g| g == "system:authenticated") {
        as_groups.push("system:authenticated".into());
    }
    Ok(User {
        name,
        groups: as_groups,
    })
}

/// Upstream's escalation check on RBAC writes: a role may hold, and a binding may grant,
/// only permissions its author holds (where it applies), unless the author may `escalate`
/// (roles) or `bind` (the bound role).
pub(crate) async fn check_grant(
    tenant: &Tenant,
    user: &User,
    rt: &vcluster_core::registry::ResourceType,
    object: &Value,
) -> Result<()> {
    if rt.group != "rbac.authorization.k8s.io" || user.groups.iter().any(|g| g == "system:masters")
    {
        return Ok(());
    }
    let meta = |key: &str| {
        object["metadata"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (namespace, name) = (meta("namespace"), meta("name"));
    let policy = policy(tenant).await?;
    let (requested, bypass, role_kind, role_name) = match rt.kind.as_str() {
        "Role" | "ClusterRole" => {
            let rules: Vec<rbac::Rule> = object["rules"]
                .as_array()
                .map(|rs| rs.iter().map(rbac::Rule::from_json).collect())
                .unwrap_or_default();
            (rules, "escalate", rt.kind.clone(), name.clone())
        }
        _ => {
            let kind = object["roleRef"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let role = object["roleRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let rules = policy
                .role_rules(&kind, &role, &namespace)
                .map(<[rbac::Rule]>::to_vec)
                .unwrap_or_default();
            (rules, "bind", kind, role)
        }
    };
    let plural = if role_kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    let may_bypass = Attributes {
        verb: bypass.into(),
        api_group: "rbac.authorization.k8s.io".into(),
        resource: plural.into(),
        namespace: if role_kind == "Role" {
            namespace.clone()
        } else {
            String::new()
        },
        name: role_name,
        path: None,
        subresource: String::new(),
    };
    if policy.allows(&subject(user), &may_bypass) {
        return Ok(());
    }
    let held = policy.rules(&subject(user), &namespace);
    let missing = rbac::not_held(&held, &requested);
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing
        .iter()
        .map(|r| format!("{{{}}}", describe(r)))
        .collect();
    let message = format!(
        "{} {name:?} is forbidden: user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        rt.qualified(),
        user.name,
        user.groups,
        shown.join("\n")
    );
    Err(ApiError {
        details: Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
        ..ApiError::new(403, Reason::Forbidden, message)
    })
}

/// A rule as upstream's escalation message prints it.
fn describe(rule: &rbac::Rule) -> String {
    let list = |name: &str, items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        format!("{name}:[{}]", quoted.join(", "))
    };
    let mut parts = Vec::new();
    if rule.non_resource_urls.is_empty() {
        parts.push(list("APIGroups", &rule.api_groups));
        parts.push(list("Resources", &rule.resources));
        if !rule.resource_names.is_empty() {
            parts.push(list("ResourceNames", &rule.resource_names));
        }
    } else {
        parts.push(list("NonResourceURLs", &rule.non_resource_urls));
    }
    parts.push(list("Verbs", &rule.verbs));
    parts.join(", ")
}
