//! `/openapi/v3`: one OpenAPI 3 document per group-version, built from the k8s-openapi
//! schemas (their `schemars` implementations), so `kubectl explain` works and kubectl
//! leaves validation to the server (the PATCH operations list `fieldValidation`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vcluster_core::registry::{self, ResourceType};

use crate::types::TypeSet;

/// Adds the schema of one kind (and every type it uses) to `generator`, by registry kind.
type AddSchema = fn(&mut SchemaGenerator) -> String;

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($(($group:literal, $version:literal, $kind:literal) => $ty:ty,)*) => {
        /// The k8s-openapi type of each built-in kind.
        fn schema_of(group: &str, version: &str, kind: &str) -> Option<AddSchema> {
            match (group, version, kind) {
                $(($group, $version, $kind) => Some(add::<$ty>),)*
                _ => None,
            }
        }
    };
}

use k8s_openapi::api as k;

kinds! {
    ("", "v1", "Namespace") => k::core::v1::Namespace,
    ("", "v1", "Pod") => k::core::v1::Pod,
    ("", "v1", "Service") => k::core::v1::Service,
    ("", "v1", "Endpoints") => k::core::v1::Endpoints,
    ("", "v1", "ConfigMap") => k::core::v1::ConfigMap,
    ("", "v1", "Secret") => k::core::v1::Secret,
    ("", "v1", "ServiceAccount") => k::core::v1::ServiceAccount,
    ("", "v1", "Event") => k::core::v1::Event,
    ("", "v1", "Node") => k::core::v1::Node,
    ("", "v1", "PersistentVolumeClaim") => k::core::v1::PersistentVolumeClaim,
    ("", "v1", "PersistentVolume") => k::core::v1::PersistentVolume,
    ("", "v1", "ResourceQuota") => k::core::v1::ResourceQuota,
    ("", "v1", "LimitRange") => k::core::v1::LimitRange,
    ("", "v1", "PodTemplate") => k::core::v1::PodTemplate,
    ("", "v1", "ReplicationController") => k::core::v1::ReplicationController,
    ("apps", "v1", "Deployment") => k::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => k::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => k::apps::v1::StatefulSet,
    ("apps", "v1", "DaemonSet") => k::apps::v1::DaemonSet,
    ("apps", "v1", "ControllerRevision") => k::apps::v1::ControllerRevision,
    ("batch", "v1", "Job") => k::batch::v1::Job,
    ("batch", "v1", "CronJob") => k::batch::v1::CronJob,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => k::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => k::autoscaling::v2::HorizontalPodAutoscaler,
    ("networking.k8s.io", "v1", "Ingress") => k::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => k::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => k::networking::v1::NetworkPolicy,
    ("policy", "v1", "PodDisruptionBudget") => k::policy::v1::PodDisruptionBudget,
    ("storage.k8s.io", "v1", "StorageClass") => k::storage::v1::StorageClass,
    ("storage.k8s.io", "v1", "CSIDriver") => k::storage::v1::CSIDriver,
    ("storage.k8s.io", "v1", "CSINode") => k::storage::v1::CSINode,
    ("storage.k8s.io", "v1", "VolumeAttachment") => k::storage::v1::VolumeAttachment,
    ("coordination.k8s.io", "v1", "Lease") => k::coordination::v1::Lease,
    ("discovery.k8s.io", "v1", "EndpointSlice") => k::discovery::v1::EndpointSlice,
    ("events.k8s.io", "v1", "Event") => k::events::v1::Event,
    ("scheduling.k8s.io", "v1", "PriorityClass") => k::scheduling::v1::PriorityClass,
    ("node.k8s.io", "v1", "RuntimeClass") => k::node::v1::RuntimeClass,
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => k::admissionregistration::v1::MutatingWebhookConfiguration,
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => k::admissionregistration::v1::ValidatingWebhookConfiguration,
    ("rbac.authorization.k8s.io", "v1", "Role") => k::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => k::rbac::v1::RoleBinding,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => k::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => k::rbac::v1::ClusterRoleBinding,
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => k::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => k::authorization::v1::SelfSubjectRulesReview,
    ("authorization.k8s.io", "v1", "SubjectAccessReview") => k::authorization::v1::SubjectAccessReview,
    ("authentication.k8s.io", "v1", "SelfSubjectReview") => k::authentication::v1::SelfSubjectReview,
    ("authentication.k8s.io", "v1", "TokenReview") => k::authentication::v1::TokenReview,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ("apiregistration.k8s.io", "v1", "APIService") => k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
}

/// The path key of a group-version: `api/v1`, `apis/apps/v1`.
fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn paths(rt: &ResourceType) -> Value {
    let prefix = format!("/{}", gv_key(&rt.group, &rt.version));
    let collection = if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{prefix}/{}", rt.plural)
    };
    let gvk = json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
    let operation = |verb: &str| {
        json!({
            "operationId": format!("{verb}{}", rt.kind),
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk[0],
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
            "responses": {"200": {"description": "OK"}},
        })
    };
    json!({
        collection.clone(): {"get": operation("list"), "post": operation("create")},
        format!("{collection}/{{name}}"): {
            "get": operation("get"),
            "put": operation("put"),
            "patch": operation("patch"),
            "delete": operation("delete"),
        },
    })
}

/// An OpenAPI document of `paths` and `schemas`, serialized, with its hash.
fn serialized(paths: Map<String, Value>, schemas: impl serde::Serialize) -> (Bytes, String) {
    let (major, minor) = crate::KUBE_VERSION;
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    let bytes = Bytes::from(serde_json::to_vec(&doc).expect("a JSON value serializes"));
    let hash = Sha256::digest(&bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02X}"))
        .collect();
    (bytes, hash)
}

/// The document of a group-version of the tenant's custom resources: each kind's schema
/// from its CRD, with `apiVersion`, `kind` and `metadata` as every object has them.
fn custom_document(types: &TypeSet, key: &str) -> Option<(Bytes, String)> {
    let kinds: Vec<&Arc<ResourceType>> = types
        .custom
        .iter()
        .filter(|rt| gv_key(&rt.group, &rt.version) == key)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    let meta = add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&mut generator);
    let mut schemas = generator.take_definitions(true);
    let mut all_paths = Map::new();
    for rt in kinds {
        let given = rt.custom.as_ref().and_then(|c| c.schema.clone());
        let mut schema = given.unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
        schema["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
        schema["properties"]["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{meta}")}], "description": "Standard object's metadata."});
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        schemas.insert(
            format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind),
            schema,
        );
        if let Value::Object(p) = paths(rt) {
            all_paths.extend(p);
        }
    }
    Some(serialized(all_paths, schemas))
}

/// Every group-version's document, serialized, with its hash.
fn documents() -> &'static BTreeMap<String, (Bytes, String)> {
    static DOCS: OnceLock<BTreeMap<String, (Bytes, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs = BTreeMap::new();
        let mut gvs: Vec<(&str, &str)> = registry::BUILTINS
            .iter()
            .map(|r| (r.group.as_str(), r.version.as_str()))
            .collect();
        gvs.dedup();
        let builtins = TypeSet::default();
        for (group, version) in gvs {
            let mut generator = SchemaSettings::openapi3().into_generator();
            let mut kinds = Vec::new();
            let mut all_paths = Map::new();
            for rt in builtins.resources(group, version) {
                if let Some(add) = schema_of(&rt.group, &rt.version, &rt.kind) {
                    kinds.push((add(&mut generator), rt));
                }
                if let Value::Object(p) = paths(rt) {
                    all_paths.extend(p);
                }
            }
            let mut schemas = generator.take_definitions(true);
            for (name, rt) in kinds {
                if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
                    schema.insert(
                        "x-kubernetes-group-version-kind".into(),
                        json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]),
                    );
                }
            }
            docs.insert(gv_key(group, version), serialized(all_paths, schemas));
        }
        docs
    })
}

/// `/openapi/v3`: where each group-version's document is, the tenant's own included.
pub(crate) fn index(types: &TypeSet) -> Value {
    let entry = |key: &str, hash: &str| json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")});
    let mut paths: Map<String, Value> = documents()
        .iter()
        .map(|(key, (_, hash))| (key.clone(), entry(key, hash)))
        .collect();
    for rt in &types.custom {
        let key = gv_key(&rt.group, &rt.version);
        if !paths.contains_key(&key)
            && let Some((_, hash)) = custom_document(types, &key)
        {
            paths.insert(key.clone(), entry(&key, &hash));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<key>`: one group-version's document.
pub(crate) fn document(types: &TypeSet, key: &str) -> Option<Bytes> {
    match documents().get(key) {
        Some((bytes, _)) => Some(bytes.clone()),
        None => custom_document(types, key).map(|(bytes, _)| bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_a_schema_with_its_gvk() {
        for rt in registry::BUILTINS.iter() {
            assert!(
                schema_of(&rt.group, &rt.version, &rt.kind).is_some(),
                "{} has no schema",
                rt.qualified()
            );
        }
        let apps: Value = serde_json::from_slice(
            &document(&TypeSet::default(), "apis/apps/v1").expect("apps/v1"),
        )
        .expect("json");
        let deployment = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let spec_ref = deployment["properties"]["spec"].to_string();
        assert!(
            spec_ref.contains("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"),
            "{spec_ref}"
        );
        assert!(
            index(&TypeSet::default())["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash="))
        );
    }
}
