//! Service accounts as identities: the TokenRequest API (`POST
//! .../serviceaccounts/<name>/token`, what `kubectl create token` and kubelets send), and
//! the authentication of the tokens it and the token controller (`vcluster-controllers`)
//! issue.

use serde_json::{Value, json};
use vcluster_core::object::meta_str;
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::{ApiError, Cause, Reason};

use crate::User;
use crate::objects::{Result, current, now};
use crate::router::Target;
use crate::tenant::Tenant;
use crate::tokens::{
    Claims, DEFAULT_EXPIRATION, KubernetesClaims, MAX_EXPIRATION, MIN_EXPIRATION, ObjectClaim,
};

fn resource(plural: &str) -> std::sync::Arc<ResourceType> {
    registry::find("", "v1", plural).expect("a built-in core resource")
}

/// The object `kind`/`name` of the core group, in `namespace` where it is namespaced.
async fn find(
    tenant: &Tenant,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<std::sync::Arc<Value>>> {
    let rt = resource(plural);
    let namespace = rt.namespaced.then_some(namespace);
    current(
        tenant,
        &rt,
        registry::storage_key(&rt, namespace, name).as_bytes(),
    )
    .await
}

fn uid(object: &Value) -> String {
    meta_str(object, "uid").unwrap_or_default().to_owned()
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::MAX)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `POST serviceaccounts/<name>/token`: a signed token for the service account, for the
/// audiences and the life the request asks (the server's own audience and an hour if it
/// names none), optionally bound to a pod, secret or node.
pub(crate) async fn token_request(tenant: &Tenant, target: &Target, body: &Value) -> Result<Value> {
    let name = target.name.as_deref().expect("a named target");
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let invalid = |field: &str, value: &str, detail: &str| {
        let cause = Cause::invalid(field, value, detail);
        ApiError::invalid_kind("authentication.k8s.io", "TokenRequest", name, vec![cause])
    };
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let issuer = tenant.identity.tokens.issuer().to_owned();
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(given) if !given.is_empty() => given
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![issuer.clone()],
    };
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let account = &find(tenant, "serviceaccounts", namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found(&resource("serviceaccounts"), name))?;
    let mut kubernetes = KubernetesClaims {
        namespace: namespace.to_owned(),
        serviceaccount: ObjectClaim {
            name: name.to_owned(),
            uid: uid(account),
        },
        pod: None,
        secret: None,
        node: None,
    };
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
    if let Some(bound) = bound {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let bound_name = bound["name"].as_str().unwrap_or_default();
        let (plural, slot) = match kind {
            "Pod" => ("pods", &mut kubernetes.pod),
            "Secret" => ("secrets", &mut kubernetes.secret),
            "Node" => ("nodes", &mut kubernetes.node),
            other => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    other,
                    "supported values: \"Pod\", \"Secret\", \"Node\"",
                ));
            }
        };
        let object = &find(tenant, plural, namespace, bound_name)
            .await?
            .ok_or_else(|| ApiError::not_found(&resource(plural), bound_name))?;
        let actual = uid(object);
        if let Some(given) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && given != actual
        {
            return Err(ApiError::new(
                409,
                Reason::Conflict,
                format!(
                    "the UID in the bound object reference ({given}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        *slot = Some(ObjectClaim {
            name: bound_name.to_owned(),
            uid: actual,
        });
    }
    let issued = now();
    let claims = Claims::issued(issuer, audiences.clone(), issued, expiration, kubernetes);
    let token = tenant.identity.tokens.sign(&claims);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": rfc3339(issued)},
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": bound,
        },
        "status": {"token": token, "expirationTimestamp": rfc3339(claims.exp)},
    }))
}

/// The service account a bearer token stands for: signed by this tenant, unexpired, for
/// this server, and naming a service account (and bound object) that still exists with the
/// same uid — a deleted and recreated account does not inherit old tokens.
pub(crate) async fn authenticate(tenant: &Tenant, token: &str) -> Option<User> {
    let server = [tenant.identity.tokens.issuer().to_owned()];
    authenticate_for(tenant, token, &server)
        .await
        .map(|(user, _)| user)
}

/// The same for a token meant for any of `audiences`, with the audiences it is for (what a
/// TokenReview answers).
pub(crate) async fn authenticate_for(
    tenant: &Tenant,
    token: &str,
    audiences: &[String],
) -> Option<(User, Vec<String>)> {
    let claims = tenant.identity.tokens.verify_for(token, now(), audiences)?;
    let k = &claims.kubernetes;
    let still = |object: &Option<std::sync::Arc<Value>>, claim: &ObjectClaim| {
        object.as_ref().is_some_and(|o| uid(o) == claim.uid)
    };
    let account = &find(
        tenant,
        "serviceaccounts",
        &k.namespace,
        &k.serviceaccount.name,
    )
    .await
    .ok()?;
    if !still(account, &k.serviceaccount) {
        return None;
    }
    for (plural, bound) in [("pods", &k.pod), ("secrets", &k.secret), ("nodes", &k.node)] {
        if let Some(bound) = bound {
            let object = &find(tenant, plural, &k.namespace, &bound.name).await.ok()?;
            if !still(object, bound) {
                return None;
            }
        }
    }
    let user = User {
        name: claims.sub.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
    };
    let for_whom = claims
        .aud
        .into_iter()
        .filter(|a| audiences.contains(a))
        .collect();
    Some((user, for_whom))
}
