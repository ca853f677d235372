//! Request dispatch: which tenant, who is asking, and which endpoint answers.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use vcluster_core::registry::ResourceType;
use vcluster_core::status::{ApiError, Reason};

use crate::http::{Body, BodyError, BoxError, RequestBody, error, full, ok};
use crate::inflight::{Admission, Asking, Gate, Held};
use crate::metrics::{OPENMETRICS, PROMETHEUS_TEXT, TenantRequests, Tracker};
use crate::router::{Route, route};
use crate::tenant::{Tenant, Tenants};
use crate::types::TypeSet;
use crate::{accounts, authz, handlers, tls};

/// The Kubernetes version this server answers as.
pub const KUBE_VERSION: (&str, &str) = ("1", "34");

/// What the TLS handshake established about a connection.
#[derive(Debug, Default)]
pub struct Connection {
    /// The SNI host name the client asked for.
    pub server_name: Option<String>,
    /// The client certificate chain, leaf first (not yet checked against any CA).
    pub client_chain: Vec<CertificateDer<'static>>,
    /// The last CA the chain was checked against, and who the chain proved to be (`None`:
    /// not signed by that CA). A connection keeps addressing the same tenant, so its chain
    /// is verified once instead of once per request (an ECDSA verification each).
    verified: std::sync::Mutex<Option<(CertificateDer<'static>, Option<User>)>>,
}

impl Connection {
    pub fn new(server_name: Option<String>, client_chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            server_name,
            client_chain,
            verified: Default::default(),
        }
    }

    /// The user the client certificate names, if the chain is signed by `ca`.
    fn certificate_user(&self, ca: &CertificateDer<'static>) -> Option<User> {
        if self.client_chain.is_empty() {
            return None;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((checked, user)) = verified.as_ref()
            && checked == ca
        {
            return user.clone();
        }
        let user = tls::verify_client_chain(&self.client_chain, ca)
            .then(|| tls::subject(&self.client_chain[0]))
            .flatten()
            .map(|(name, mut groups)| {
                groups.push("system:authenticated".into());
                User { name, groups }
            });
        *verified = Some((ca.clone(), user.clone()));
        user
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// A request without credentials where anonymous requests are let in (the
    /// service-account issuer's discovery): kube-apiserver's anonymous user, whom RBAC then
    /// weighs like anyone else.
    fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// Answers one request of a connection, within `gate`'s in-flight limit and request
/// timeout: what the server runs for every request it reads, and what tests and the fuzz
/// target call without a socket or TLS (`conn` then says what a handshake would have
/// established: the SNI name, a client certificate chain).
pub async fn handle<B>(
    tenants: &Tenants,
    conn: &Connection,
    gate: &Gate,
    req: Request<B>,
) -> Response<Held>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let req = req.map(|body| body.map_err(|e| BodyError(e.into())).boxed_unsync());
    let mut tracker = tenants.metrics().track(req.method(), req.uri());
    let mut admission = Admission::default();
    let response = dispatch(tenants, conn, gate, req, &mut tracker, &mut admission).await;
    // Counted as answered: a response refused for the unsent-bytes budget is a 429.
    let response = admission.reserve(response);
    admission.hold(tracker.finish(response))
}

/// Answers a request, telling `tracker` what it is as it learns it, and setting
/// `admission` once it is let in.
async fn dispatch(
    tenants: &Tenants,
    conn: &Connection,
    gate: &Gate,
    req: Request<RequestBody>,
    tracker: &mut Tracker<'_>,
    admission: &mut Admission,
) -> Response<Body> {
    let (named, path) = split_tenant(req.uri().path());
    let picked = pick_tenant(tenants, conn, named);
    if let Ok(tenant) = &picked {
        tenant.count_request();
    }
    let route = route(&path);
    match &route {
        Route::Resource(resource) => {
            let (namespaced, named, subresource) = resource.shape();
            let labels = &mut tracker.labels;
            labels.resource_request(req.uri(), req.headers(), namespaced, named, subresource);
        }
        other => tracker.labels.path(other.metrics_path()),
    }
    tracker.in_flight();
    // The probes and the version are the process's, whichever tenant the path names (and
    // whether or not it exists): answered to anyone, they tell nothing about tenants.
    match route {
        Route::Health(probe, check) => {
            let params = crate::http::query(req.uri());
            return crate::health::answer(tenants, probe, check.as_deref(), &params).await;
        }
        Route::Version => return ok(&version()),
        _ => {}
    }
    let tenant = match picked {
        Ok(tenant) => tenant,
        Err(e) => return error(&e),
    };
    let span = tracing::debug_span!("request", tenant = %tenant.name, method = %req.method(), path = %path);
    let _enter = span.enter();
    // Anonymous requests are let in for the issuer's discovery only (as kube-apiserver's
    // anonymous authenticator limited to those paths by its `conditions`), and only where
    // the tenant is named by host: under `/clusters/<name>` they would tell which exist.
    let user = match authenticate(&tenant, conn, req.headers()).await {
        Some(user) => user,
        None if named.is_none()
            && matches!(route, Route::OpenIdConfiguration | Route::Jwks)
            && !has_credentials(conn, req.headers()) =>
        {
            User::anonymous()
        }
        None => return error(&unauthorized()),
    };
    let user = match authz::impersonate(&tenant, user, req.headers()).await {
        Ok(user) => user,
        Err(e) => return error(&e),
    };
    tracing::debug!(user = %user.name, "authenticated");
    // As upstream, the in-flight limit applies to the impersonated user, before
    // authorization.
    let asking = Asking {
        tenant: &tenant.name,
        platform: tenants.is_default(&tenant.name),
        user: &user.name,
        groups: &user.groups,
    };
    *admission = match gate.admit(tracker.labels.in_flight_kind(), &asking) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.response(),
    };
    let types = match crate::crds::types(&tenant).await {
        Ok(types) => types,
        Err(e) => return error(&e),
    };
    // Authorization: of the resource a path names, or of the path itself.
    let Route::Resource(resource) = route else {
        let what = authz::path_attributes(req.method(), &path);
        if let Err(e) = authz::authorize(&tenant, &user, &what).await {
            return error(&e);
        }
        if route == Route::Metrics {
            return metrics(tenants, &tenant, req.headers());
        }
        return other_route(route, &tenant, &types, &req);
    };
    let Some(target) = resource.resolve(&types) else {
        return error(&not_found());
    };
    tracker
        .labels
        .resource(&target.rt, target.subresource.as_deref());
    let what = authz::resource_attributes(req.method(), &target, &crate::http::query(req.uri()));
    if let Err(e) = authz::authorize(&tenant, &user, &what).await {
        return error(&e);
    }
    admission
        .run(handlers::handle(&tenant, &user, target, req))
        .await
}

/// Discovery, OpenAPI and the service-account issuer's documents.
fn other_route(
    route: Route,
    tenant: &Tenant,
    types: &TypeSet,
    req: &Request<RequestBody>,
) -> Response<Body> {
    match route {
        Route::OpenIdConfiguration => ok(&tenant.identity.tokens.openid_configuration()),
        Route::Jwks => ok(&tenant.identity.tokens.jwks()),
        Route::Api => ok(&api_versions(req.headers())),
        Route::Apis => ok(&api_group_list(types)),
        Route::Group(group) => match api_group(types, &group) {
            Some(g) => ok(&g),
            None => error(&not_found()),
        },
        Route::GroupVersion { group, version } => match resource_list(types, &group, &version) {
            Some(list) => ok(&list),
            None => error(&not_found()),
        },
        Route::OpenApiV2 => openapi_v2(),
        Route::OpenApiV3 => ok(&crate::openapi::index(types)),
        Route::OpenApiV3Document(key) => match crate::openapi::document(types, &key) {
            Some(doc) => {
                let mut response = Response::new(full(doc));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            None => error(&not_found()),
        },
        Route::Resource(_)
        | Route::NotFound
        | Route::Health(..)
        | Route::Version
        | Route::Metrics => error(&not_found()),
    }
}

/// `/metrics`: the whole process's metrics, whichever tenant it is read through (what a
/// platform's monitoring scrapes). Tenant names appear only in the busiest tenants'
/// request counts, and by name only to the platform's own tenant (the default one, which
/// `vcluster up` makes first): through any other, a tenant sees its own name there at
/// most, every other tenant counted under `other`.
fn metrics(tenants: &Tenants, tenant: &Tenant, headers: &http::HeaderMap) -> Response<Body> {
    let counts = tenants
        .open()
        .iter()
        .map(|t| (t.name.clone(), t.requests()))
        .collect();
    let platform = tenants
        .default_tenant()
        .is_some_and(|default| default.name == tenant.name);
    let viewer = (!platform).then_some(tenant.name.as_str());
    // What Prometheus asks for; any other client gets the classic text format, as from
    // kube-apiserver.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let body = tenants
        .metrics()
        .render(TenantRequests::new(counts, viewer), openmetrics);
    let mut response = Response::new(full(body));
    let content_type = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

/// What every tenant answers a request whose credentials it does not accept.
fn unauthorized() -> ApiError {
    ApiError::new(401, Reason::Unauthorized, "Unauthorized")
}

/// The tenant a path names with its `/clusters/<name>` prefix, if it has one, and the path
/// within that tenant.
fn split_tenant(path: &str) -> (Option<&str>, String) {
    match path.strip_prefix("/clusters/") {
        Some(rest) => {
            let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
            (Some(name), format!("/{rest}"))
        }
        None => (None, path.to_owned()),
    }
}

/// The tenant a request addresses: the one its path names (`named`), else the SNI host
/// name's, else the default tenant. A prefix naming another tenant than the SNI did is
/// refused.
///
/// A path naming a tenant that does not exist is answered as every existing tenant answers
/// a client it does not know: 401. Only a client that a tenant authenticates can tell that
/// tenant exists, and no credential authenticates to a tenant that does not exist, so the
/// answers of `/clusters/nope/...` and `/clusters/<existing>/...` are the same, byte for
/// byte, to a client without that tenant's credentials (anonymous, or another tenant's).
/// The paths answered before authentication are the process's own (probes, version: see
/// `dispatch`); anonymous issuer discovery is served only where the tenant is named by
/// host, which a connection's TLS certificate has already told about.
fn pick_tenant(
    tenants: &Tenants,
    conn: &Connection,
    named: Option<&str>,
) -> Result<Arc<Tenant>, ApiError> {
    let by_sni = conn
        .server_name
        .as_deref()
        .and_then(|host| tenants.by_host(host));
    if let Some(name) = named {
        // Checked before the name is looked up, so the refusal is the same whether or not
        // the named tenant exists.
        if by_sni.as_ref().is_some_and(|t| t.name != name) {
            return Err(not_found());
        }
        return tenants.get(name).ok_or_else(unauthorized);
    }
    by_sni
        .or_else(|| tenants.default_tenant())
        .ok_or_else(not_found)
}

/// Whether a request presents any credential (a bearer token, a client certificate),
/// verified or not: one that fails to verify is refused (401), never taken as anonymous.
fn has_credentials(conn: &Connection, headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || !conn.client_chain.is_empty()
}

/// Who is asking: the tenant admin's token, a service-account token of this tenant, or a
/// client certificate signed by this tenant's CA. Anything else is nobody (401): a
/// credential of another tenant never verifies here.
async fn authenticate(
    tenant: &Tenant,
    conn: &Connection,
    headers: &http::HeaderMap,
) -> Option<User> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth.strip_prefix("Bearer ")?.trim();
        if tenant.identity.is_admin_token(token) {
            return Some(User {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        return accounts::authenticate(tenant, token).await;
    }
    conn.certificate_user(tenant.identity.ca_cert_der())
}

/// What `/version` says: the Kubernetes version served, and this build's (crate version,
/// git commit and its date, tree state, compiler, platform), recorded by `build.rs`.
fn version() -> Value {
    let (major, minor) = KUBE_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0+vcluster.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": env!("VCLUSTER_GIT_COMMIT"),
        "gitTreeState": env!("VCLUSTER_GIT_TREE_STATE"),
        "buildDate": env!("VCLUSTER_BUILD_DATE"),
        "goVersion": env!("VCLUSTER_RUSTC"),
        "compiler": "rustc",
        "platform": platform(),
    })
}

/// The platform as Go names it (`linux/amd64`).
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

fn api_versions(headers: &http::HeaderMap) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    })
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(&versions[0]),
    })
}

fn api_group_list(types: &TypeSet) -> Value {
    let groups: Vec<Value> = types
        .groups()
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn api_group(types: &TypeSet, group: &str) -> Option<Value> {
    let groups = types.groups();
    let (g, versions) = groups.iter().find(|(g, _)| *g == group)?;
    let mut out = group_json(g, versions);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Some(out)
}

fn resource_entries(rt: &ResourceType) -> Vec<Value> {
    let mut out = vec![json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": rt.verbs,
        "shortNames": rt.short_names,
        "categories": rt.categories,
    })];
    for sub in &rt.subresources {
        let mut entry = json!({
            "name": format!("{}/{}", rt.plural, sub.name),
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": sub.verbs,
        });
        if let Some((group, version, kind)) = sub.kind {
            entry["group"] = json!(group);
            entry["version"] = json!(version);
            entry["kind"] = json!(kind);
        }
        out.push(entry);
    }
    out
}

fn resource_list(types: &TypeSet, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = types
        .resources(group, version)
        .flat_map(|rt| resource_entries(rt))
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `/openapi/v2` as kubectl fetches it: protobuf. An empty body is a valid, empty
/// document: kubectl's apply, create and replace then skip client-side validation.
/// A real document (from the k8s-openapi schemas) is still to come.
fn openapi_v2() -> Response<Body> {
    let mut response = Response::new(full(bytes::Bytes::new()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_every_group_version_with_subresources() {
        let types = TypeSet::default();
        let list = api_group_list(&types);
        let groups = list["groups"].as_array().expect("groups");
        assert!(
            groups
                .iter()
                .any(|g| g["name"] == "apps" && g["preferredVersion"]["version"] == "v1")
        );
        for group in groups {
            for v in group["versions"].as_array().expect("versions") {
                let (g, version) = (
                    group["name"].as_str().expect("name"),
                    v["version"].as_str().expect("v"),
                );
                assert!(
                    resource_list(&types, g, version).is_some(),
                    "{g}/{version} advertised but empty"
                );
            }
        }
        let apps = resource_list(&types, "apps", "v1").expect("apps/v1");
        let scale = apps["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("deployments/scale");
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        let core = resource_list(&types, "", "v1").expect("v1");
        let pods = core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "pods")
            .expect("pods");
        assert_eq!(pods["name"], "pods");
        assert_eq!(pods["singularName"], "pod");
        assert!(
            pods["verbs"]
                .as_array()
                .expect("verbs")
                .contains(&json!("watch"))
        );
    }
}
