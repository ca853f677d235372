//! CustomResourceDefinitions: their validation, the names and conditions the server accepts
//! them with, and the types they serve.
//!
//! As upstream, a CRD is served under the names in `status.acceptedNames`, once its
//! `NamesAccepted` condition is true; names that clash with another CRD of the same group
//! leave it unaccepted (and unserved) rather than refused. Acceptance and establishment
//! happen when the CRD is written, so `Established` is true as soon as the names are.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::names::is_dns_label;
use crate::object::strings;
use crate::registry::{
    CRUD, Column, Custom, GET_PATCH_UPDATE, ResourceType, ScalePaths, Subresource,
};
use crate::status::Cause;

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Why a CRD (as it would be stored) is invalid, in upstream's field paths.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    } else if !is_dns_label(plural) {
        causes.push(Cause::invalid(
            "spec.names.plural",
            plural,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    let name = s(crd, "/metadata/name");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be spec.names.plural+\".\"+spec.group ({plural}.{group})"),
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(Cause::required("spec.scope", "")),
        other => causes.push(Cause::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &format!("{storage} storage versions"),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v["name"].as_str().unwrap_or_default();
        if !is_dns_label(vname) {
            causes.push(Cause::invalid(
                format!("spec.versions[{i}].name"),
                vname,
                "a DNS-1035 label is required",
            ));
        }
        if seen.contains(&vname) {
            causes.push(Cause::invalid(
                format!("spec.versions[{i}].name"),
                vname,
                "must be unique",
            ));
        }
        seen.push(vname);
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            causes.extend(crate::structural::check(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            ));
        }
    }
    causes
}

/// Whether the CRD's `condition` is `True`.
pub fn condition_true(crd: &Value, condition: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == condition && c["status"] == "True")
        })
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// Sets `status.acceptedNames` and the `NamesAccepted`, `Established` (and, while it is
/// deleted, `Terminating`) conditions of `crd`, given the other CRDs of the tenant. `now`
/// stamps conditions that change.
pub fn accept<'a>(crd: &mut Value, others: impl IntoIterator<Item = &'a Value>, now: &str) {
    let group = s(crd, "/spec/group").to_owned();
    let names = crd["spec"]["names"].clone();
    let mine = |n: &Value| {
        let mut all = vec![
            n["plural"].as_str().unwrap_or_default().to_owned(),
            n["singular"].as_str().unwrap_or_default().to_owned(),
        ];
        all.extend(strings(n, "/shortNames"));
        all.retain(|x| !x.is_empty());
        all
    };
    let wanted = mine(&names);
    let kind = names["kind"].as_str().unwrap_or_default();
    let name = s(crd, "/metadata/name").to_owned();
    let conflict = others
        .into_iter()
        .filter(|o| s(o, "/metadata/name") != name && s(o, "/spec/group") == group)
        .find_map(|o| {
            let accepted = &o["status"]["acceptedNames"];
            let theirs = mine(accepted);
            if let Some(clash) = wanted.iter().find(|w| theirs.contains(w)) {
                return Some(format!("{clash:?} is already in use"));
            }
            (accepted["kind"] == kind).then(|| format!("{kind:?} is already in use"))
        });
    let mut accepted = names.clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(kind.to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    let previous = crd["status"]["conditions"].clone();
    let stamp = |kind: &str, status: bool, reason: &str, message: &str| {
        // Keep the transition time of a condition whose status did not change.
        let same = previous.as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == kind && c["status"] == if status { "True" } else { "False" })
        });
        match same {
            Some(c) => condition(
                kind,
                status,
                reason,
                message,
                c["lastTransitionTime"].as_str().unwrap_or(now),
            ),
            None => condition(kind, status, reason, message, now),
        }
    };
    let mut conditions = Vec::new();
    match conflict {
        Some(message) => {
            conditions.push(stamp("NamesAccepted", false, "NameConflict", &message));
            conditions.push(stamp(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            ));
            crd["status"]["acceptedNames"] = json!({"plural": "", "kind": ""});
        }
        None => {
            conditions.push(stamp(
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
            ));
            conditions.push(stamp(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ));
            crd["status"]["acceptedNames"] = accepted;
        }
    }
    if crate::object::is_deleting(crd) {
        conditions.push(stamp(
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResourceDefinition marked for deletion; deleting its objects",
        ));
    }
    crd["status"]["conditions"] = json!(conditions);
    if crd["status"]["storedVersions"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        crd["status"]["storedVersions"] = json!([storage_version(crd)]);
    }
}

/// The version a CRD's objects are stored at (the one marked `storage`).
pub fn storage_version(crd: &Value) -> &str {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
}

fn columns(version: &Value) -> Vec<Column> {
    version["additionalPrinterColumns"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| Column {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    type_: c["type"].as_str().unwrap_or("string").to_owned(),
                    format: c["format"].as_str().unwrap_or_default().to_owned(),
                    description: c["description"].as_str().unwrap_or_default().to_owned(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The types an accepted CRD serves: one per served version, under its accepted names.
pub fn served_types(crd: &Value) -> Vec<ResourceType> {
    if !condition_true(crd, "NamesAccepted") {
        return Vec::new();
    }
    let names = &crd["status"]["acceptedNames"];
    let terminating = crate::object::is_deleting(crd);
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .map(|v| {
            let mut subresources = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subresources.push(Subresource {
                    name: "status",
                    kind: None,
                    verbs: GET_PATCH_UPDATE,
                });
            }
            let scale = v.pointer("/subresources/scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "/specReplicasPath").to_owned(),
                status_replicas: s(sc, "/statusReplicasPath").to_owned(),
                label_selector: sc["labelSelectorPath"].as_str().map(str::to_owned),
            });
            if scale.is_some() {
                subresources.push(Subresource {
                    name: "scale",
                    kind: Some(("autoscaling", "v1", "Scale")),
                    verbs: GET_PATCH_UPDATE,
                });
            }
            ResourceType {
                group: s(crd, "/spec/group").to_owned(),
                version: v["name"].as_str().unwrap_or_default().to_owned(),
                kind: s(names, "/kind").to_owned(),
                plural: s(names, "/plural").to_owned(),
                singular: s(names, "/singular").to_owned(),
                namespaced: s(crd, "/spec/scope") == "Namespaced",
                short_names: strings(names, "/shortNames"),
                categories: strings(names, "/categories"),
                verbs: CRUD,
                subresources,
                custom: Some(Arc::new(Custom {
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    columns: columns(v),
                    scale,
                    terminating,
                })),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({
            "metadata": {"name": format!("{plural}.example.com")},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": short},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v1beta1", "served": false, "storage": false},
                ],
            },
        })
    }

    #[test]
    fn a_valid_crd_is_accepted_established_and_served() {
        let mut w = crd("widgets", "Widget", &["wd"]);
        assert_eq!(validate(&w), Vec::new());
        accept(&mut w, [], "2026-01-01T00:00:00Z");
        assert!(condition_true(&w, "NamesAccepted") && condition_true(&w, "Established"));
        assert_eq!(w["status"]["acceptedNames"]["singular"], "widget");
        assert_eq!(w["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(w["status"]["storedVersions"], json!(["v1"]));
        let types = served_types(&w);
        assert_eq!(types.len(), 1, "only served versions");
        let rt = &types[0];
        assert_eq!(
            (rt.group.as_str(), rt.version.as_str(), rt.plural.as_str()),
            ("example.com", "v1", "widgets")
        );
        assert!(rt.namespaced && rt.has_status() && rt.subresource("scale").is_some());
        let custom = rt.custom.as_ref().expect("custom");
        assert_eq!(custom.columns[0].json_path, ".spec.size");
        assert_eq!(
            custom.scale.as_ref().map(|s| s.spec_replicas.as_str()),
            Some(".spec.replicas")
        );
    }

    #[test]
    fn clashing_names_are_not_accepted() {
        let mut first = crd("widgets", "Widget", &["wd"]);
        accept(&mut first, [], "t");
        let mut second = crd("gadgets", "Gadget", &["wd"]);
        accept(&mut second, [&first], "t");
        assert!(!condition_true(&second, "NamesAccepted"));
        assert!(!condition_true(&second, "Established"));
        assert!(served_types(&second).is_empty());
    }

    #[test]
    fn invalid_crds_name_their_fields() {
        let mut bad = crd("Widgets", "Widget", &[]);
        bad["spec"]["scope"] = json!("Galaxy");
        bad["spec"]["versions"][1]["storage"] = json!(true);
        let fields: Vec<String> = validate(&bad).into_iter().map(|c| c.field).collect();
        assert!(
            fields.contains(&"spec.names.plural".to_owned()),
            "{fields:?}"
        );
        assert!(fields.contains(&"spec.scope".to_owned()), "{fields:?}");
        assert!(fields.contains(&"spec.versions".to_owned()), "{fields:?}");
    }
}
