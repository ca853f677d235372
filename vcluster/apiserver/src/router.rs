//! URL grammar: which endpoint a path names.

use std::sync::Arc;

use vcluster_core::registry::ResourceType;

use crate::types::TypeSet;

/// A request for a resource: a collection, one object, or one object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub rt: Arc<ResourceType>,
    /// The namespace from the URL (for namespaced resources; `None` for a list or watch
    /// across all namespaces).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// A resource path as the URL spells it, before it is matched against the served types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl ResourcePath {
    /// Whether the path names a namespace and an object, and the subresource it names:
    /// what the metrics tell requests apart by before the type is known.
    pub(crate) fn shape(&self) -> (bool, bool, Option<&str>) {
        (
            self.namespace.is_some(),
            self.name.is_some(),
            self.subresource.as_deref(),
        )
    }

    /// What the path names among `types`, if it names anything served.
    pub(crate) fn resolve(self, types: &TypeSet) -> Option<Target> {
        let rt = types.find(&self.group, &self.version, &self.plural)?;
        if self.namespace.is_some() && !rt.namespaced {
            return None;
        }
        if rt.namespaced && self.namespace.is_none() && self.name.is_some() {
            return None;
        }
        if let Some(sub) = &self.subresource
            && rt.subresource(sub).is_none()
        {
            return None;
        }
        Some(Target {
            rt,
            namespace: self.namespace,
            name: self.name,
            subresource: self.subresource,
        })
    }
}

/// A health probe's endpoint (answered by `health.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Healthz,
    Livez,
    Readyz,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Version,
    /// `/metrics`: the process's metrics (`metrics.rs`).
    Metrics,
    /// A health probe and, optionally, the one check asked for (`/readyz/etcd`).
    Health(Probe, Option<String>),
    Api,
    Apis,
    Group(String),
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3,
    /// `/.well-known/openid-configuration`: the service-account issuer's discovery document.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the keys that verify service-account tokens.
    Jwks,
    /// One group-version's document: `api/v1`, `apis/apps/v1`.
    OpenApiV3Document(String),
    Resource(ResourcePath),
    NotFound,
}

/// Subresources of a namespace, which the `namespaces/<name>/<x>` form could be confused with.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub(crate) fn route(path: &str) -> Route {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["metrics"] => Route::Metrics,
        [probe @ ("healthz" | "livez" | "readyz"), rest @ ..] => {
            let probe = match *probe {
                "livez" => Probe::Livez,
                "readyz" => Probe::Readyz,
                _ => Probe::Healthz,
            };
            match rest {
                [] => Route::Health(probe, None),
                [check] => Route::Health(probe, Some((*check).to_owned())),
                _ => Route::NotFound,
            }
        }
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["openapi", "v2"] => Route::OpenApiV2,
        [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Route::Jwks,
        ["openapi", "v3"] => Route::OpenApiV3,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3Document(rest.join("/")),
        ["api", "v1"] => Route::GroupVersion {
            group: String::new(),
            version: "v1".into(),
        },
        ["apis", group] => Route::Group((*group).into()),
        ["apis", group, version] => Route::GroupVersion {
            group: (*group).into(),
            version: (*version).into(),
        },
        ["api", "v1", rest @ ..] => resource("", "v1", rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, next, ..] if !NAMESPACE_SUBRESOURCES.contains(next) => {
            (Some(ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Route::NotFound,
    };
    Route::Resource(ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        plural: plural.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

impl Route {
    /// The path a non-resource route is counted under in the metrics: its pattern where
    /// it has a variable part, so that nothing a client puts in a path becomes a label.
    pub(crate) fn metrics_path(&self) -> &'static str {
        match self {
            Route::Version => "/version",
            Route::Metrics => "/metrics",
            Route::Health(Probe::Healthz, _) => "/healthz",
            Route::Health(Probe::Livez, _) => "/livez",
            Route::Health(Probe::Readyz, _) => "/readyz",
            Route::Api => "/api",
            Route::Apis => "/apis",
            Route::Group(_) => "/apis/*",
            Route::GroupVersion { group, .. } if group.is_empty() => "/api/v1",
            Route::GroupVersion { .. } => "/apis/*/*",
            Route::OpenApiV2 => "/openapi/v2",
            Route::OpenApiV3 => "/openapi/v3",
            Route::OpenApiV3Document(_) => "/openapi/v3/*",
            Route::OpenIdConfiguration => "/.well-known/openid-configuration",
            Route::Jwks => "/openid/v1/jwks",
            Route::Resource(_) | Route::NotFound => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path) {
            Route::Resource(p) => p.resolve(&TypeSet::default()).expect("a served type"),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn resolved(path: &str) -> Option<Target> {
        match route(path) {
            Route::Resource(p) => p.resolve(&TypeSet::default()),
            _ => None,
        }
    }

    #[test]
    fn namespaced_cluster_scoped_and_subresource_paths() {
        let t = target("/apis/apps/v1/namespaces/ns1/deployments/web/scale");
        assert_eq!(
            (
                t.rt.plural.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("deployments", Some("ns1"), Some("web"), Some("scale"))
        );
        let t = target("/api/v1/pods");
        assert_eq!(
            (t.rt.plural.as_str(), t.namespace, t.name),
            ("pods", None, None)
        );
        let t = target("/api/v1/namespaces/foo");
        assert_eq!(
            (t.rt.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("foo"))
        );
        let t = target("/api/v1/namespaces/foo/status");
        assert_eq!(
            (
                t.rt.plural.as_str(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("namespaces", Some("foo"), Some("status"))
        );
        let t = target("/api/v1/namespaces/foo/configmaps");
        assert_eq!(
            (t.rt.plural.as_str(), t.namespace.as_deref()),
            ("configmaps", Some("foo"))
        );
        assert_eq!(resolved("/api/v1/namespaces/foo/widgets"), None);
        assert_eq!(
            resolved("/api/v1/namespaces/foo/nodes/n1"),
            None,
            "nodes are cluster-scoped"
        );
        assert_eq!(
            resolved("/api/v1/pods/p1"),
            None,
            "a namespaced object needs its namespace"
        );
        assert_eq!(resolved("/api/v1/namespaces/foo/configmaps/c/status"), None);
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            }
        );
    }
}
