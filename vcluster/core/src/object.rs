//! What the API server does to an object's metadata on create and update: names, namespaces,
//! uid, timestamps, generation, status handling and optimistic concurrency.
//!
//! Objects are `serde_json::Value`s: every resource, built-in or custom, goes through the
//! same code. The stored form carries no `resourceVersion`; it is the store revision, set
//! when an object is read back ([`with_resource_version`]).

use serde_json::{Map, Value, json};

use crate::names::{DNS_SUBDOMAIN_MESSAGE, is_dns_label, is_dns_subdomain};
use crate::registry::ResourceType;
use crate::status::{ApiError, Cause, Reason};

/// What the server supplies when an object is created: the clock and fresh identifiers are
/// outside this pure crate.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// RFC 3339, UTC, second precision (`2026-11-22T12:00:00Z`).
    pub now: String,
    pub uid: String,
    /// Five characters for `generateName`.
    pub suffix: String,
}

/// Kinds whose `metadata.generation` follows their spec (upstream's strategies set it).
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
    "PodDisruptionBudget",
];

fn tracks_generation(rt: &ResourceType) -> bool {
    GENERATION_KINDS.contains(&rt.kind.as_str())
}

/// Which naming rule a resource's names follow.
fn name_rule(rt: &ResourceType) -> NameRule {
    match rt.kind.as_str() {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035Label,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "PriorityClass" => {
            NameRule::PathSegment
        }
        // `<version>.<group>`, checked in `validation.rs` (`v1.` for the core group).
        "APIService" => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

enum NameRule {
    /// RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
    Label,
    /// RFC 1035 label: an RFC 1123 label that starts with a letter (Services').
    Dns1035Label,
    /// RFC 1123 subdomain: at most 253, labels joined by dots.
    Subdomain,
    /// Anything that is a path segment (RBAC names such as `system:node`).
    PathSegment,
}

/// Checks a name against the resource's rule; the message is upstream's.
pub fn validate_name(rt: &ResourceType, name: &str) -> Option<Cause> {
    let field = "metadata.name";
    match name_rule(rt) {
        NameRule::Label if !is_dns_label(name) => Some(Cause::invalid(
            field,
            name,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
             '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )),
        NameRule::Dns1035Label
            if !is_dns_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) =>
        {
            Some(Cause::invalid(
                field,
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
                 start with an alphabetic character, and end with an alphanumeric character \
                 (e.g. 'my-name',  or 'abc-123', regex used for validation is \
                 '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ))
        }
        NameRule::Subdomain if !is_dns_subdomain(name) => {
            Some(Cause::invalid(field, name, DNS_SUBDOMAIN_MESSAGE))
        }
        NameRule::PathSegment
            if name == "." || name == ".." || name.contains(['/', '%']) || name.is_empty() =>
        {
            Some(Cause::invalid(
                field,
                name,
                "may not contain '/' or '%', and may not be '.' or '..'",
            ))
        }
        _ => None,
    }
}

fn meta_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    object.get_mut("metadata").and_then(Value::as_object_mut)
}

/// The object's name, namespace and so on.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// Checks `apiVersion` and `kind` (filled in when absent) and that the body is an object
/// with `metadata`.
fn check_type(rt: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let api_version = rt.api_version();
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))?;
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", &rt.kind)] {
        match map.get(field) {
            // Left out (or empty): the endpoint's, as upstream's decoder defaults it.
            None | Some(Value::Null) => {
                map.insert(field.into(), Value::String(expected.into()));
            }
            Some(Value::String(s)) if s.is_empty() => {
                map.insert(field.into(), Value::String(expected.into()));
            }
            Some(Value::String(s)) if s == expected => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the object ({other}) does not match the expected {field} ({expected})"
                )));
            }
        }
    }
    match map.get("metadata") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => {
            map.insert("metadata".into(), json!({}));
        }
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    }
    Ok(())
}

/// Makes the object's namespace the request's: filled in when empty, a mismatch is a 400;
/// cluster-scoped objects carry none.
fn settle_namespace(
    rt: &ResourceType,
    object: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let meta = meta_mut(object).expect("checked by check_type");
    match (rt.namespaced, namespace) {
        (true, Some(ns)) => match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), Value::String(ns.into()));
            }
            Some(given) if given == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        },
        (true, None) => {
            return Err(ApiError::bad_request(
                "a namespaced object needs a namespace",
            ));
        }
        (false, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// Prepares a create: the object as it will be stored. `namespace` is the request's.
pub fn prepare_create(
    rt: &ResourceType,
    mut object: Value,
    namespace: Option<&str>,
    fresh: &Fresh,
) -> Result<Value, ApiError> {
    check_type(rt, &mut object)?;
    settle_namespace(rt, &mut object, namespace)?;
    let meta = meta_mut(&mut object).expect("checked by check_type");
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(base) if !base.is_empty() => {
                let base: String = base.chars().take(58).collect();
                format!("{base}{}", fresh.suffix)
            }
            _ => {
                let cause = Cause::required("metadata.name", "name or generateName is required");
                return Err(ApiError::invalid(rt, "", vec![cause]));
            }
        }
    } else {
        name
    };
    if let Some(cause) = validate_name(rt, &name) {
        return Err(ApiError::invalid(rt, &name, vec![cause]));
    }
    meta.insert("name".into(), Value::String(name));
    meta.insert("uid".into(), Value::String(fresh.uid.clone()));
    meta.insert("creationTimestamp".into(), Value::String(fresh.now.clone()));
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(server_owned);
    }
    if tracks_generation(rt) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    initial_status(rt, &mut object);
    if rt.gk() == ("batch", "Job") {
        crate::defaults::job_selector(&mut object);
    }
    crate::defaults::apply(rt, &mut object);
    valid(rt, object)
}

/// The object, or 422 with every reason it is invalid.
fn valid(rt: &ResourceType, object: Value) -> Result<Value, ApiError> {
    let causes = crate::validation::validate(rt, &object);
    if causes.is_empty() {
        return Ok(object);
    }
    let name = meta_str(&object, "name").unwrap_or_default().to_owned();
    Err(ApiError::invalid(rt, &name, causes))
}

/// The status a new object starts with where its type has a status subresource (its
/// controllers own it): what Go writes for the status struct upstream's `PrepareForCreate`
/// leaves empty (a DaemonSet's required numbers at zero), `{}` for a custom resource.
fn empty_status(rt: &ResourceType) -> Value {
    rt.custom
        .is_none()
        .then(|| crate::protobuf::zero_field(&rt.api_version(), &rt.kind, "status"))
        .flatten()
        .unwrap_or_else(|| json!({}))
}

/// What a new object starts with: its status cleared where the type has a status
/// subresource, with the phase upstream sets for pods and namespaces, and a namespace's
/// controller finalizer.
fn initial_status(rt: &ResourceType, object: &mut Value) {
    let map = object.as_object_mut().expect("checked by check_type");
    match rt.gk() {
        ("", "Pod") => {
            let mut status = empty_status(rt);
            status["phase"] = json!("Pending");
            map.insert("status".into(), status);
        }
        ("", "Namespace") => {
            let mut status = empty_status(rt);
            status["phase"] = json!("Active");
            map.insert("status".into(), status);
            // The namespace controller's finalizer: it empties a deleted namespace, then
            // lets it go. Set at create only; afterwards only `finalize` changes it.
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() && spec.is_object() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
        }
        _ if rt.has_status() => {
            map.insert("status".into(), empty_status(rt));
        }
        _ => {}
    }
}

/// `old` with the field at `path` taken from `new` (removed where `new` has none).
fn kept_but(old: &Value, new: &Value, path: &[&str]) -> Value {
    let mut kept = old.clone();
    let mut from = Some(new);
    for part in path {
        from = from.and_then(|v| v.get(part));
    }
    set_path(&mut kept, path, from.cloned());
    if let Some(m) = meta_mut(&mut kept) {
        m.remove("resourceVersion");
    }
    kept
}

/// Sets (or, with `None`, removes) the field at `path`, creating the objects above it.
fn set_path(object: &mut Value, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for part in parents {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        if value.is_none() && !map.contains_key(*part) {
            return;
        }
        at = map.entry(*part).or_insert_with(|| json!({}));
    }
    if let Some(map) = at.as_object_mut() {
        match value {
            Some(v) => {
                map.insert((*last).into(), v);
            }
            None => {
                map.remove(*last);
            }
        }
    }
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.kind == "Namespace"
}

/// Whether `object` is marked for deletion.
pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// What a Service update keeps of what was allocated at create, as upstream's registry
/// does: the cluster IPs when the update leaves them out (they may not change once set),
/// and each port's node port when the port is still there without one.
fn keep_allocated(old: &Value, new: &mut Value) -> Result<(), Cause> {
    let external_name = new.pointer("/spec/type") == Some(&json!("ExternalName"));
    let old_ip = old
        .pointer("/spec/clusterIP")
        .filter(|ip| ip.as_str().is_some_and(|s| !s.is_empty()));
    if let Some(old_ip) = old_ip
        && !external_name
    {
        match new.pointer("/spec/clusterIP").and_then(Value::as_str) {
            None | Some("") => {
                set_path(new, &["spec", "clusterIP"], Some(old_ip.clone()));
                let ips = old.pointer("/spec/clusterIPs").cloned();
                set_path(new, &["spec", "clusterIPs"], ips);
            }
            Some(ip) if Some(ip) != old_ip.as_str() => {
                return Err(Cause::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "may not change once set",
                ));
            }
            Some(_) => {}
        }
    }
    let old_ports: Vec<&Value> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
        let unset = |p: &Value| p.get("nodePort").is_none_or(|n| n.is_null() || n == 0);
        for port in ports.iter_mut().filter(|p| unset(p)) {
            let same = old_ports.iter().find(|o| {
                o.get("port") == port.get("port")
                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        == port
                            .get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
            });
            if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
                port["nodePort"] = node_port.clone();
            }
        }
    }
    Ok(())
}

/// Adds `finalizer` to `metadata.finalizers` unless it is there.
pub fn add_finalizer(object: &mut Value, finalizer: &str) {
    let finalizers = &mut object["metadata"]["finalizers"];
    match finalizers.as_array_mut() {
        Some(list) if !list.iter().any(|f| f == finalizer) => list.push(json!(finalizer)),
        Some(_) => {}
        None => *finalizers = json!([finalizer]),
    }
}

/// Where an object lists what must finalize it: `metadata.finalizers` on every object, and
/// `spec.finalizers` on namespaces (the namespace controller's `kubernetes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalizers {
    Metadata,
    Spec,
}

impl Finalizers {
    /// The JSON pointer of the list.
    pub fn pointer(self) -> &'static str {
        match self {
            Self::Metadata => "/metadata/finalizers",
            Self::Spec => "/spec/finalizers",
        }
    }
}

/// Whether `finalizer` is in the object's list `at`.
pub fn has_finalizer(object: &Value, at: Finalizers, finalizer: &str) -> bool {
    object
        .pointer(at.pointer())
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Takes `finalizer` out of the object's list `at` (if it is there).
pub fn remove_finalizer(object: &mut Value, at: Finalizers, finalizer: &str) {
    if let Some(list) = object
        .pointer_mut(at.pointer())
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f != finalizer);
    }
}

/// Whether something must still finalize `object` before it goes: `metadata.finalizers`,
/// and for namespaces `spec.finalizers` too.
pub fn has_finalizers(rt: &ResourceType, object: &Value) -> bool {
    let pending = |at: Finalizers| {
        object
            .pointer(at.pointer())
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    };
    pending(Finalizers::Metadata) || (is_namespace(rt) && pending(Finalizers::Spec))
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main endpoint: everything but the status, where the type has a status
    /// subresource.
    Main,
    /// The `status` subresource: only the status.
    Status,
    /// A namespace's `finalize` subresource: only `spec.finalizers`.
    Finalize,
}

/// Prepares an update of `old` (as stored, with its resourceVersion) to `new` (as sent).
/// A `resourceVersion` in `new` that is not the current one is a conflict; none at all is an
/// unconditional update.
pub fn prepare_update(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    namespace: Option<&str>,
    name: &str,
    scope: UpdateScope,
) -> Result<Value, ApiError> {
    check_type(rt, &mut new)?;
    settle_namespace(rt, &mut new, namespace)?;
    let current_rv = meta_str(old, "resourceVersion").unwrap_or_default();
    let meta = meta_mut(&mut new).expect("checked by check_type");
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("name".into(), Value::String(name.into()));
        }
        Some(given) if given == name => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
    }
    match meta.get("resourceVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(rv) if rv == current_rv => {}
        Some(_) => return Err(ApiError::conflict(rt, name)),
    }
    if let (Some(given), Some(current)) = (
        meta.get("uid").and_then(Value::as_str),
        meta_str(old, "uid"),
    ) && given != current
    {
        return Err(ApiError::new(
            409,
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} {name:?}: Precondition failed: UID in precondition: {given}, UID in object meta: {current}",
                rt.qualified()
            ),
        ));
    }
    // What the client may not change.
    for kept in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.get("metadata").and_then(|m| m.get(kept)) {
            Some(v) => {
                meta.insert(kept.into(), v.clone());
            }
            None => {
                meta.remove(kept);
            }
        }
    }
    meta.remove("resourceVersion");
    let mut out = match scope {
        UpdateScope::Main => {
            if rt.has_status() {
                set_path(&mut new, &["status"], old.get("status").cloned());
            }
            new
        }
        UpdateScope::Status => {
            let mut out = kept_but(old, &new, &["status"]);
            if rt.kind == "Deployment" {
                // Upstream's status strategy takes a Deployment's annotations from the
                // caller: the controller records the revision with the status.
                let annotations = new.pointer("/metadata/annotations").cloned();
                set_path(&mut out, &["metadata", "annotations"], annotations);
            }
            out
        }
        UpdateScope::Finalize => kept_but(old, &new, &["spec", "finalizers"]),
    };
    if is_namespace(rt) && scope != UpdateScope::Finalize {
        // Only the finalize subresource changes a namespace's finalizers.
        let finalizers = old.pointer("/spec/finalizers").cloned();
        set_path(&mut out, &["spec", "finalizers"], finalizers);
    }
    if scope == UpdateScope::Main && rt.gk() == ("", "Service") {
        keep_allocated(old, &mut out).map_err(|cause| ApiError::invalid(rt, name, vec![cause]))?;
    }
    if scope == UpdateScope::Main {
        crate::defaults::apply(rt, &mut out);
        out = valid(rt, out)?;
    }
    if tracks_generation(rt) && scope == UpdateScope::Main {
        let spec_changed = old.get("spec") != out.get("spec");
        // A Deployment's generation also follows its annotations (rollout triggers).
        let annotations_changed = rt.kind == "Deployment"
            && old.pointer("/metadata/annotations") != out.pointer("/metadata/annotations");
        if spec_changed || annotations_changed {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(m) = meta_mut(&mut out) {
                m.insert("generation".into(), json!(generation + 1));
            }
        }
    }
    Ok(out)
}

/// The strings of the array at `pointer` in `value` (none where it is absent).
pub fn strings(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The object as served: its stored form with `metadata.resourceVersion` set.
pub fn with_resource_version(mut object: Value, revision: u64) -> Value {
    if let Some(meta) = meta_mut(&mut object) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    /// The spec of a valid Deployment, with `replicas`.
    fn deployment_spec(replicas: i64) -> Value {
        json!({"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}})
    }

    fn fresh() -> Fresh {
        Fresh {
            now: "2026-11-22T12:00:00Z".into(),
            uid: "00000000-0000-4000-8000-000000000001".into(),
            suffix: "x7k2p".into(),
        }
    }

    #[test]
    fn create_fills_server_fields_and_generates_names() {
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        let body = json!({"metadata": {"generateName": "web-", "resourceVersion": "5"}, "spec": deployment_spec(2), "status": {"replicas": 9}});
        let out = prepare_create(deploy, body, Some("default"), &fresh()).expect("create");
        assert_eq!(out["apiVersion"], "apps/v1");
        assert_eq!(out["kind"], "Deployment");
        assert_eq!(out["metadata"]["name"], "web-x7k2p");
        assert_eq!(out["metadata"]["namespace"], "default");
        assert_eq!(out["metadata"]["generation"], 1);
        assert_eq!(out["metadata"]["uid"], fresh().uid);
        assert!(out["metadata"].get("resourceVersion").is_none());
        assert_eq!(
            out["status"],
            json!({}),
            "a new object's status is the controllers'"
        );
    }

    #[test]
    fn create_rejects_bad_names_namespaces_and_types() {
        let cm = &find("", "v1", "configmaps").expect("configmaps");
        let e = prepare_create(
            cm,
            json!({"metadata": {"name": "Bad_Name"}}),
            Some("default"),
            &fresh(),
        )
        .expect_err("invalid name");
        assert_eq!((e.code, e.reason), (422, Reason::Invalid));
        let e = prepare_create(cm, json!({"metadata": {}}), Some("default"), &fresh())
            .expect_err("no name");
        assert_eq!(e.code, 422);
        let e = prepare_create(
            cm,
            json!({"metadata": {"name": "a", "namespace": "other"}}),
            Some("default"),
            &fresh(),
        )
        .expect_err("namespace mismatch");
        assert_eq!(e.code, 400);
        let e = prepare_create(
            cm,
            json!({"kind": "Secret", "metadata": {"name": "a"}}),
            Some("default"),
            &fresh(),
        )
        .expect_err("wrong kind");
        assert_eq!(e.code, 400);
        let ns = &find("", "v1", "namespaces").expect("namespaces");
        let e = prepare_create(ns, json!({"metadata": {"name": "a.b"}}), None, &fresh())
            .expect_err("label");
        assert_eq!(e.code, 422, "namespace names are labels: no dots");
        let role = &find("rbac.authorization.k8s.io", "v1", "clusterroles").expect("clusterroles");
        prepare_create(
            role,
            json!({"metadata": {"name": "system:node"}}),
            None,
            &fresh(),
        )
        .expect("path segment names");
    }

    #[test]
    fn update_checks_the_resource_version_and_keeps_what_the_server_owns() {
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        let stored = prepare_create(
            deploy,
            json!({"metadata": {"name": "web"}, "spec": deployment_spec(1)}),
            Some("d"),
            &fresh(),
        )
        .expect("create");
        let mut old = with_resource_version(stored, 7);
        old["status"] = json!({"replicas": 1});
        let stale = json!({"metadata": {"name": "web", "resourceVersion": "6"}, "spec": deployment_spec(3)});
        let e = prepare_update(deploy, &old, stale, Some("d"), "web", UpdateScope::Main)
            .expect_err("stale");
        assert_eq!((e.code, e.reason), (409, Reason::Conflict));

        let unconditional = json!({"metadata": {"name": "web", "uid": null}, "spec": deployment_spec(3), "status": {"replicas": 100}});
        let out = prepare_update(
            deploy,
            &old,
            unconditional,
            Some("d"),
            "web",
            UpdateScope::Main,
        )
        .expect("update");
        assert_eq!(out["metadata"]["generation"], 2, "the spec changed");
        assert_eq!(out["metadata"]["uid"], fresh().uid);
        assert_eq!(
            out["status"],
            json!({"replicas": 1}),
            "the main endpoint keeps the status"
        );

        let status = json!({"metadata": {"name": "web", "resourceVersion": "7"}, "spec": deployment_spec(50), "status": {"replicas": 2}});
        let out = prepare_update(deploy, &old, status, Some("d"), "web", UpdateScope::Status)
            .expect("status");
        assert_eq!(
            out["spec"]["replicas"], 1,
            "the status endpoint keeps the spec"
        );
        assert_eq!(out["status"]["replicas"], 2);
        assert_eq!(out["metadata"]["generation"], 1);
    }

    #[test]
    fn a_service_keeps_its_addresses_across_updates() {
        let svc = &crate::registry::find("", "v1", "services").expect("services");
        let old = json!({"metadata": {"name": "s", "namespace": "d", "resourceVersion": "3", "uid": "u"},
            "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "type": "NodePort",
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let replaced = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        let out =
            prepare_update(svc, &old, replaced, Some("d"), "s", UpdateScope::Main).expect("update");
        assert_eq!(out["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(out["spec"]["ports"][0]["nodePort"], 30080);
        assert!(out["spec"]["ports"][1].get("nodePort").is_none());
        let moved = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        let e = prepare_update(svc, &old, moved, Some("d"), "s", UpdateScope::Main)
            .expect_err("immutable");
        assert_eq!(e.code, 422);
    }
}
