//! Role-based access control, as kube-apiserver's RBAC authorizer decides: a request is
//! allowed if some binding of its user (or one of its groups, or its service account) —
//! a ClusterRoleBinding anywhere, a RoleBinding in the request's namespace — grants a rule
//! that covers it. Nothing denies; everything not granted is forbidden. Members of
//! `system:masters` are allowed everything, as upstream.
//!
//! [`Policy`] indexes a tenant's roles and bindings by subject, so a decision reads only the
//! bindings of the asking user and groups, however many bindings the tenant has.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::object::strings;
use crate::selector::LabelSelector;

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    /// For resource requests.
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For anything else (`/api`, `/healthz`...): the path.
    pub path: Option<String>,
}

/// One rule of a role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn covers(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Rule {
    pub fn from_json(v: &Value) -> Self {
        Self {
            verbs: strings(v, "/verbs"),
            api_groups: strings(v, "/apiGroups"),
            resources: strings(v, "/resources"),
            resource_names: strings(v, "/resourceNames"),
            non_resource_urls: strings(v, "/nonResourceURLs"),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut out = json!({"verbs": self.verbs});
        if !self.non_resource_urls.is_empty() {
            out["nonResourceURLs"] = json!(self.non_resource_urls);
        } else {
            out["apiGroups"] = json!(self.api_groups);
            out["resources"] = json!(self.resources);
            if !self.resource_names.is_empty() {
                out["resourceNames"] = json!(self.resource_names);
            }
        }
        out
    }

    /// Whether this rule grants the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !covers(&self.verbs, &a.verb) {
            return false;
        }
        if let Some(path) = &a.path {
            return self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || u == path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            });
        }
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || *r == resource
                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        covers(&self.api_groups, &a.api_group)
            && resource_ok
            && (self.resource_names.is_empty()
                || (!a.name.is_empty() && self.resource_names.contains(&a.name)))
    }
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// A binding's grant: the rules of its role, where they apply.
#[derive(Debug, Clone)]
struct Grant {
    /// `None` for a ClusterRoleBinding (everywhere).
    namespace: Option<String>,
    /// `ClusterRole` or `Role` and its name; a Role is looked up in the binding's namespace.
    role: (String, String),
}

/// A tenant's RBAC objects, indexed for decisions.
#[derive(Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<Rule>>,
    /// (namespace, name) → rules.
    roles: HashMap<(String, String), Vec<Rule>>,
    /// `User:<name>`, `Group:<name>` → grants.
    by_subject: HashMap<String, Vec<Grant>>,
}

fn subject_keys(subject: &Value, binding_namespace: Option<&str>) -> Option<String> {
    let name = subject["name"].as_str()?;
    match subject["kind"].as_str()? {
        "User" => Some(format!("User:{name}")),
        "Group" => Some(format!("Group:{name}")),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(binding_namespace)?;
            Some(format!("User:system:serviceaccount:{ns}:{name}"))
        }
        _ => None,
    }
}

impl Policy {
    /// The policy of these roles and bindings (objects as stored).
    pub fn new<'a>(
        cluster_roles: impl IntoIterator<Item = &'a Value>,
        roles: impl IntoIterator<Item = &'a Value>,
        cluster_bindings: impl IntoIterator<Item = &'a Value>,
        bindings: impl IntoIterator<Item = &'a Value>,
    ) -> Self {
        let rules_of = |role: &Value| -> Vec<Rule> {
            role["rules"]
                .as_array()
                .map(|rs| rs.iter().map(Rule::from_json).collect())
                .unwrap_or_default()
        };
        let cluster_roles: Vec<&Value> = cluster_roles.into_iter().collect();
        let mut policy = Policy::default();
        for role in &cluster_roles {
            let name = role["metadata"]["name"].as_str().unwrap_or_default();
            policy.cluster_roles.insert(name.to_owned(), rules_of(role));
        }
        // An aggregated role also has the rules of every role its selectors match, those
        // aggregated themselves included (`admin` ← `edit` ← `view`): repeated until stable.
        let selectors: Vec<(&str, Vec<LabelSelector>)> = cluster_roles
            .iter()
            .filter_map(|role| {
                let list = role
                    .pointer("/aggregationRule/clusterRoleSelectors")?
                    .as_array()?;
                let name = role["metadata"]["name"].as_str().unwrap_or_default();
                Some((
                    name,
                    list.iter()
                        .filter_map(|s| LabelSelector::from_object(s).ok())
                        .collect(),
                ))
            })
            .collect();
        for _ in 0..=selectors.len() {
            let mut changed = false;
            for (name, selectors) in &selectors {
                let mut rules = policy.cluster_roles[*name].clone();
                for other in &cluster_roles {
                    let other_name = other["metadata"]["name"].as_str().unwrap_or_default();
                    if other_name != *name && selectors.iter().any(|s| s.matches_object(other)) {
                        for rule in &policy.cluster_roles[other_name] {
                            if !rules.contains(rule) {
                                rules.push(rule.clone());
                                changed = true;
                            }
                        }
                    }
                }
                policy.cluster_roles.insert((*name).to_owned(), rules);
            }
            if !changed {
                break;
            }
        }
        for role in roles {
            let key = (
                role["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                role["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            policy.roles.insert(key, rules_of(role));
        }
        let mut add = |binding: &Value, namespace: Option<&str>| {
            let role = (
                binding["roleRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                binding["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            for subject in binding["subjects"].as_array().into_iter().flatten() {
                if let Some(key) = subject_keys(subject, namespace) {
                    policy.by_subject.entry(key).or_default().push(Grant {
                        namespace: namespace.map(str::to_owned),
                        role: role.clone(),
                    });
                }
            }
        };
        for binding in cluster_bindings {
            add(binding, None);
        }
        for binding in bindings {
            let ns = binding["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            add(binding, Some(&ns));
        }
        policy
    }

    fn grants<'a>(&'a self, who: &Subject<'_>) -> impl Iterator<Item = &'a Grant> {
        let mut keys = vec![format!("User:{}", who.user)];
        keys.extend(who.groups.iter().map(|g| format!("Group:{g}")));
        keys.into_iter()
            .filter_map(|k| self.by_subject.get(&k))
            .flatten()
    }

    fn rules_of(&self, grant: &Grant) -> &[Rule] {
        let (kind, name) = &grant.role;
        let rules = match (kind.as_str(), &grant.namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(name),
            ("Role", Some(ns)) => self.roles.get(&(ns.clone(), name.clone())),
            _ => None,
        };
        rules.map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether `who` may do `what`.
    pub fn allows(&self, who: &Subject<'_>, what: &Attributes) -> bool {
        if who.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        self.grants(who)
            .filter(|g| {
                // A RoleBinding grants in its namespace only, and never cluster-wide paths.
                g.namespace.is_none()
                    || (what.path.is_none() && g.namespace.as_deref() == Some(&what.namespace))
            })
            .any(|g| self.rules_of(g).iter().any(|r| r.allows(what)))
    }

    /// The rules `who` has in `namespace` (those of cluster bindings and of the namespace's
    /// bindings), as `SelfSubjectRulesReview` reports them.
    pub fn rules(&self, who: &Subject<'_>, namespace: &str) -> Vec<Rule> {
        if who.groups.iter().any(|g| g == "system:masters") {
            return vec![
                Rule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..Rule::default()
                },
                Rule {
                    verbs: vec!["*".into()],
                    non_resource_urls: vec!["*".into()],
                    ..Rule::default()
                },
            ];
        }
        let mut out: Vec<Rule> = Vec::new();
        for grant in self
            .grants(who)
            .filter(|g| g.namespace.is_none() || g.namespace.as_deref() == Some(namespace))
        {
            for rule in self.rules_of(grant) {
                if !out.contains(rule) {
                    out.push(rule.clone());
                }
            }
        }
        out
    }

    /// The rules of a role (`ClusterRole`, or `Role` in `namespace`), aggregation included.
    pub fn role_rules(&self, kind: &str, name: &str, namespace: &str) -> Option<&[Rule]> {
        let rules = match kind {
            "ClusterRole" => self.cluster_roles.get(name),
            "Role" => self.roles.get(&(namespace.to_owned(), name.to_owned())),
            _ => None,
        };
        rules.map(Vec::as_slice)
    }
}

/// The parts of `requested` that `held` does not grant, as single-verb rules: what a user
/// would give away that they do not have. A wildcard is covered only by a wildcard.
pub fn not_held(held: &[Rule], requested: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    for rule in requested {
        for verb in &rule.verbs {
            let grants = |what: &Attributes| held.iter().any(|h| h.allows(what));
            for url in &rule.non_resource_urls {
                let what = Attributes {
                    verb: verb.clone(),
                    path: Some(url.clone()),
                    ..Attributes::default()
                };
                let wildcard = url.ends_with('*');
                let covered = if wildcard {
                    held.iter().any(|h| {
                        covers_verb(h, verb)
                            && h.non_resource_urls.iter().any(|u| u == "*" || u == url)
                    })
                } else {
                    grants(&what)
                };
                if !covered {
                    missing.push(Rule {
                        verbs: vec![verb.clone()],
                        non_resource_urls: vec![url.clone()],
                        ..Rule::default()
                    });
                }
            }
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    let (resource_name, subresource) =
                        resource.split_once('/').unwrap_or((resource, ""));
                    let names: Vec<&str> = if rule.resource_names.is_empty() {
                        vec![""]
                    } else {
                        rule.resource_names.iter().map(String::as_str).collect()
                    };
                    for name in names {
                        let what = Attributes {
                            verb: verb.clone(),
                            api_group: group.clone(),
                            resource: resource_name.to_owned(),
                            subresource: subresource.to_owned(),
                            name: name.to_owned(),
                            ..Attributes::default()
                        };
                        if !grants(&what) {
                            missing.push(Rule {
                                verbs: vec![verb.clone()],
                                api_groups: vec![group.clone()],
                                resources: vec![resource.clone()],
                                resource_names: if name.is_empty() {
                                    Vec::new()
                                } else {
                                    vec![name.to_owned()]
                                },
                                ..Rule::default()
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

fn covers_verb(rule: &Rule, verb: &str) -> bool {
    covers(&rule.verbs, verb)
}

/// The 403 message kube-apiserver gives a request RBAC refused.
pub fn forbidden_message(user: &str, what: &Attributes) -> String {
    if let Some(path) = &what.path {
        return format!(
            "forbidden: User {user:?} cannot {} path {path:?}",
            what.verb
        );
    }
    let resource = if what.subresource.is_empty() {
        what.resource.clone()
    } else {
        format!("{}/{}", what.resource, what.subresource)
    };
    let qualified = if what.api_group.is_empty() {
        what.resource.clone()
    } else {
        format!("{}.{}", what.resource, what.api_group)
    };
    let object = if what.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", what.name)
    };
    let scope = if what.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", what.namespace)
    };
    format!(
        "{object} is forbidden: User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        what.verb, what.api_group
    )
}

fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels},
        "rules": rules,
    })
}

fn aggregated(name: &str, label: &str, extra_labels: Value) -> Value {
    let mut role = cluster_role(name, extra_labels, json!([]));
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    role
}

/// The roles and bindings a cluster starts with (upstream's bootstrap policy, reduced to
/// the roles users bind): `cluster-admin`, the aggregated `admin`, `edit` and `view`, and
/// what every authenticated user may do (discovery, asking what they may do, who they are).
pub fn bootstrap() -> Vec<(&'static str, Value)> {
    let bootstrap = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let with = |extra: Value| {
        let mut labels = bootstrap.clone();
        if let (Some(l), Some(e)) = (labels.as_object_mut(), extra.as_object()) {
            l.extend(e.clone());
        }
        labels
    };
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let workloads = json!([
        "pods",
        "pods/log",
        "pods/status",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "replicationcontrollers/status",
        "services",
        "services/status",
        "endpoints",
        "persistentvolumeclaims",
        "persistentvolumeclaims/status",
        "configmaps",
        "serviceaccounts",
        "events",
        "limitranges",
        "resourcequotas",
        "resourcequotas/status",
        "namespaces/status",
        "podtemplates",
        "bindings"
    ]);
    let apps = json!([
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "statefulsets",
        "statefulsets/scale",
        "statefulsets/status",
        "daemonsets",
        "daemonsets/status",
        "controllerrevisions"
    ]);
    let roles = vec![
        (
            "clusterroles",
            cluster_role(
                "cluster-admin",
                bootstrap.clone(),
                json!([
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ]),
            ),
        ),
        (
            "clusterroles",
            aggregated(
                "admin",
                "rbac.authorization.k8s.io/aggregate-to-admin",
                bootstrap.clone(),
            ),
        ),
        (
            "clusterroles",
            aggregated(
                "edit",
                "rbac.authorization.k8s.io/aggregate-to-edit",
                with(json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"})),
            ),
        ),
        (
            "clusterroles",
            aggregated(
                "view",
                "rbac.authorization.k8s.io/aggregate-to-view",
                with(json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"})),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:aggregate-to-view",
                with(json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"})),
                json!([
                    {"apiGroups": [""], "resources": workloads, "verbs": read},
                    {"apiGroups": [""], "resources": ["namespaces"], "verbs": read},
                    {"apiGroups": ["apps"], "resources": apps, "verbs": read},
                    {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"], "verbs": read},
                    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], "verbs": read},
                    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingresses/status", "networkpolicies"], "verbs": read},
                    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": read},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                ]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:aggregate-to-edit",
                with(json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"})),
                json!([
                    {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/eviction", "replicationcontrollers", "replicationcontrollers/scale", "services", "services/proxy", "endpoints", "persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts", "events"], "verbs": write},
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
                    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                    {"apiGroups": ["apps"], "resources": apps, "verbs": write},
                    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write},
                    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write},
                    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": write},
                    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": write},
                ]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:aggregate-to-admin",
                with(json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"})),
                json!([
                    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
                ]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:basic-user",
                bootstrap.clone(),
                json!([
                    {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                ]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:discovery",
                bootstrap.clone(),
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
    ];
    let binding_to = |name: &str, role: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|group| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}))
            .collect();
        (
            "clusterrolebindings",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": bootstrap},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            }),
        )
    };
    let binding = |name: &str, role: &str, group: &str| binding_to(name, role, &[group]);
    let mut out = roles;
    out.push((
        "clusterroles",
        cluster_role(
            "system:service-account-issuer-discovery",
            bootstrap.clone(),
            json!([{"nonResourceURLs": ["/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"], "verbs": ["get"]}]),
        ),
    ));
    // Upstream binds it to service accounts only, and documents binding it to
    // `system:unauthenticated` for an issuer that relying parties outside the cluster read
    // (a cloud's workload identity): every tenant's issuer is one, so it is bound so here.
    out.push(binding_to(
        "system:service-account-issuer-discovery",
        "system:service-account-issuer-discovery",
        &["system:serviceaccounts", "system:unauthenticated"],
    ));
    out.push((
        "clusterroles",
        cluster_role(
            "system:public-info-viewer",
            bootstrap.clone(),
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
    ));
    out.push(binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        "system:authenticated",
    ));
    // Monitoring reads the metrics and probes, and nothing else: a tenant's admin grants it
    // by putting a user in the group.
    out.push((
        "clusterroles",
        cluster_role(
            "system:monitoring",
            bootstrap.clone(),
            json!([{"nonResourceURLs": ["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"], "verbs": ["get"]}]),
        ),
    ));
    out.push(binding(
        "system:monitoring",
        "system:monitoring",
        "system:monitoring",
    ));
    out.push(binding("cluster-admin", "cluster-admin", "system:masters"));
    out.push(binding(
        "system:basic-user",
        "system:basic-user",
        "system:authenticated",
    ));
    out.push(binding(
        "system:discovery",
        "system:discovery",
        "system:authenticated",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &[(&str, Value)]) -> Policy {
        let mut all = bootstrap();
        all.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let of = |kind: &'static str| all.iter().filter(move |(k, _)| *k == kind).map(|(_, v)| v);
        Policy::new(
            of("clusterroles"),
            of("roles"),
            of("clusterrolebindings"),
            of("rolebindings"),
        )
    }

    fn get(resource: &str, ns: &str) -> Attributes {
        Attributes {
            verb: "get".into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: "x".into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn role_bindings_grant_in_their_namespace_only() {
        let edit_in_dev = json!({
            "metadata": {"name": "alice-edit", "namespace": "dev"},
            "roleRef": {"kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": "alice"}],
        });
        let p = policy(&[("rolebindings", edit_in_dev)]);
        let alice = Subject {
            user: "alice",
            groups: &["system:authenticated".into()],
        };
        assert!(
            p.allows(&alice, &get("configmaps", "dev")),
            "edit aggregates view"
        );
        assert!(p.allows(&alice, &get("secrets", "dev")));
        let mut create = get("deployments", "dev");
        create.verb = "create".into();
        create.api_group = "apps".into();
        assert!(p.allows(&alice, &create));
        assert!(
            !p.allows(&alice, &get("configmaps", "prod")),
            "another namespace"
        );
        let mut roles = get("roles", "dev");
        roles.api_group = "rbac.authorization.k8s.io".into();
        assert!(
            !p.allows(&alice, &roles),
            "edit cannot read roles; admin can"
        );
        let discovery = Attributes {
            verb: "get".into(),
            path: Some("/apis/apps/v1".into()),
            ..Attributes::default()
        };
        assert!(
            p.allows(&alice, &discovery),
            "every authenticated user discovers"
        );
        let admin = Subject {
            user: "root",
            groups: &["system:masters".into()],
        };
        assert!(p.allows(&admin, &get("nodes", "")));
    }

    #[test]
    fn service_accounts_resource_names_and_subresources() {
        let role = json!({
            "metadata": {"name": "one-cm", "namespace": "app"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]},
            ],
        });
        let binding = json!({
            "metadata": {"name": "robot", "namespace": "app"},
            "roleRef": {"kind": "Role", "name": "one-cm"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}],
        });
        let p = policy(&[("roles", role), ("rolebindings", binding)]);
        let robot = Subject {
            user: "system:serviceaccount:app:robot",
            groups: &["system:serviceaccounts".into()],
        };
        let mut settings = get("configmaps", "app");
        settings.name = "settings".into();
        assert!(p.allows(&robot, &settings));
        assert!(!p.allows(&robot, &get("configmaps", "app")), "another name");
        let mut scale = get("deployments", "app");
        scale.api_group = "apps".into();
        scale.verb = "update".into();
        scale.subresource = "scale".into();
        assert!(p.allows(&robot, &scale));
        scale.subresource = String::new();
        assert!(!p.allows(&robot, &scale), "the subresource only");
    }

    #[test]
    fn granting_needs_holding() {
        let p = policy(&[]);
        let view = p.role_rules("ClusterRole", "view", "").expect("view");
        let edit = p.role_rules("ClusterRole", "edit", "").expect("edit");
        assert!(not_held(edit, view).is_empty(), "edit holds view");
        let missing = not_held(view, edit);
        assert!(
            missing
                .iter()
                .any(|r| r.resources == ["secrets"] && r.verbs == ["create"]),
            "{missing:?}"
        );
        let admin = p
            .role_rules("ClusterRole", "cluster-admin", "")
            .expect("cluster-admin");
        assert!(not_held(admin, edit).is_empty());
        assert!(
            !not_held(edit, admin).is_empty(),
            "a wildcard needs a wildcard"
        );
    }

    #[test]
    fn messages_read_like_kube_apiservers() {
        let mut a = get("configmaps", "dev");
        a.verb = "list".into();
        a.name = String::new();
        assert_eq!(
            forbidden_message("alice", &a),
            r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "dev""#
        );
        let nodes = Attributes {
            verb: "get".into(),
            resource: "nodes".into(),
            name: "n1".into(),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden_message("bob", &nodes),
            r#"nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
    }

    #[test]
    fn anonymous_clients_may_read_the_issuer_discovery_and_nothing_else() {
        let p = policy(&[]);
        let anonymous = Subject {
            user: "system:anonymous",
            groups: &["system:unauthenticated".into()],
        };
        let path = |path: &str| Attributes {
            verb: "get".into(),
            path: Some(path.into()),
            ..Attributes::default()
        };
        assert!(p.allows(&anonymous, &path("/.well-known/openid-configuration")));
        assert!(p.allows(&anonymous, &path("/openid/v1/jwks")));
        for denied in ["/api", "/metrics", "/version", "/openapi/v2"] {
            assert!(!p.allows(&anonymous, &path(denied)), "{denied}");
        }
        assert!(!p.allows(&anonymous, &get("configmaps", "default")));
    }
}
