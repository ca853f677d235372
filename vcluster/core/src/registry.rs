//! The one table of resources. Discovery, routing, storage keys and OpenAPI are all derived
//! from it, so a resource is added in exactly one place.

use std::sync::{Arc, LazyLock};

use serde_json::Value;

/// The verbs a resource (or subresource) answers, as discovery lists them.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// What a `status`-like subresource answers.
pub const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE_ONLY: &[&str] = &["create"];

/// A subresource and the kind its requests and responses carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the subresource's object, where it is not the parent's
    /// (`deployments/scale` is an `autoscaling/v1` `Scale`).
    pub kind: Option<(&'static str, &'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

const STATUS: Subresource = Subresource {
    name: "status",
    kind: None,
    verbs: GET_PATCH_UPDATE,
};
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: Some(("autoscaling", "v1", "Scale")),
    verbs: GET_PATCH_UPDATE,
};

/// A column of `kubectl get` output (`additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// A JSONPath relative to the object (`.spec.replicas`).
    pub json_path: String,
}

/// The `scale` subresource's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What one served version of a CRD (`crd.rs`) adds to its type beyond names and scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custom {
    /// The version's `openAPIV3Schema` (structural), if it has one.
    pub schema: Option<Value>,
    pub columns: Vec<Column>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its objects are read and deleted, not created.
    pub terminating: bool,
}

/// One resource of the API: what discovery says of it and how it is stored. Built-in types
/// are made once ([`BUILTINS`]); a tenant's custom resources are made from its CRDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: &'static [&'static str],
    pub subresources: Vec<Subresource>,
    /// What a custom resource's definition adds: its schema, printer columns, scale paths.
    pub custom: Option<Arc<Custom>>,
}

impl ResourceType {
    /// Group and kind, for matching on the built-in kinds' own rules.
    pub fn gk(&self) -> (&str, &str) {
        (&self.group, &self.kind)
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the main endpoint keeps the stored status (types with a status subresource).
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }
}

macro_rules! resources {
    ($( $group:literal $version:literal $kind:literal $plural:literal $singular:literal
        $scope:ident [$($short:literal),*] [$($cat:literal),*] $verbs:expr, [$($sub:expr),*]; )*) => {
        /// Every built-in resource served, in discovery order.
        pub static BUILTINS: LazyLock<Vec<Arc<ResourceType>>> = LazyLock::new(|| vec![$(Arc::new(ResourceType {
            group: $group.into(),
            version: $version.into(),
            kind: $kind.into(),
            plural: $plural.into(),
            singular: $singular.into(),
            namespaced: resources!(@scope $scope),
            short_names: vec![$($short.into()),*],
            categories: vec![$($cat.into()),*],
            verbs: $verbs,
            subresources: vec![$($sub),*],
            custom: None,
        })),*]);
    };
    (@scope namespaced) => { true };
    (@scope cluster) => { false };
}

const BINDING: Subresource = Subresource {
    name: "binding",
    kind: Some(("", "v1", "Binding")),
    verbs: CREATE_ONLY,
};
const EVICTION: Subresource = Subresource {
    name: "eviction",
    kind: Some(("policy", "v1", "Eviction")),
    verbs: CREATE_ONLY,
};
/// The kubelet's endpoints, reached through the API server (upstream's "connect"
/// subresources): a pod's logs, exec, attach and port-forward.
const LOG: Subresource = Subresource {
    name: "log",
    kind: Some(("", "v1", "Pod")),
    verbs: &["get"],
};
const EXEC: Subresource = Subresource {
    name: "exec",
    kind: Some(("", "v1", "PodExecOptions")),
    verbs: &["create", "get"],
};
const ATTACH: Subresource = Subresource {
    name: "attach",
    kind: Some(("", "v1", "PodAttachOptions")),
    verbs: &["create", "get"],
};
const PORTFORWARD: Subresource = Subresource {
    name: "portforward",
    kind: Some(("", "v1", "PodPortForwardOptions")),
    verbs: &["create", "get"],
};
const FINALIZE: Subresource = Subresource {
    name: "finalize",
    kind: None,
    verbs: &["update"],
};
const TOKEN: Subresource = Subresource {
    name: "token",
    kind: Some(("authentication.k8s.io", "v1", "TokenRequest")),
    verbs: CREATE_ONLY,
};

resources! {
    "" "v1" "Namespace" "namespaces" "namespace" cluster ["ns"] [] CRUD, [STATUS, FINALIZE];
    "" "v1" "Pod" "pods" "pod" namespaced ["po"] ["all"] CRUD, [STATUS, BINDING, EVICTION, LOG, EXEC, ATTACH, PORTFORWARD];
    "" "v1" "Service" "services" "service" namespaced ["svc"] ["all"] CRUD, [STATUS];
    "" "v1" "Endpoints" "endpoints" "endpoints" namespaced ["ep"] [] CRUD, [];
    "" "v1" "ConfigMap" "configmaps" "configmap" namespaced ["cm"] [] CRUD, [];
    "" "v1" "Secret" "secrets" "secret" namespaced [] [] CRUD, [];
    "" "v1" "ServiceAccount" "serviceaccounts" "serviceaccount" namespaced ["sa"] [] CRUD, [TOKEN];
    "" "v1" "Event" "events" "event" namespaced ["ev"] [] CRUD, [];
    "" "v1" "Node" "nodes" "node" cluster ["no"] [] CRUD, [STATUS];
    "" "v1" "PersistentVolumeClaim" "persistentvolumeclaims" "persistentvolumeclaim" namespaced ["pvc"] [] CRUD, [STATUS];
    "" "v1" "PersistentVolume" "persistentvolumes" "persistentvolume" cluster ["pv"] [] CRUD, [STATUS];
    "" "v1" "ResourceQuota" "resourcequotas" "resourcequota" namespaced ["quota"] [] CRUD, [STATUS];
    "" "v1" "LimitRange" "limitranges" "limitrange" namespaced ["limits"] [] CRUD, [];
    "" "v1" "PodTemplate" "podtemplates" "podtemplate" namespaced [] [] CRUD, [];
    "" "v1" "ReplicationController" "replicationcontrollers" "replicationcontroller" namespaced ["rc"] ["all"] CRUD, [STATUS, SCALE];
    "apps" "v1" "Deployment" "deployments" "deployment" namespaced ["deploy"] ["all"] CRUD, [STATUS, SCALE];
    "apps" "v1" "ReplicaSet" "replicasets" "replicaset" namespaced ["rs"] ["all"] CRUD, [STATUS, SCALE];
    "apps" "v1" "StatefulSet" "statefulsets" "statefulset" namespaced ["sts"] ["all"] CRUD, [STATUS, SCALE];
    "apps" "v1" "DaemonSet" "daemonsets" "daemonset" namespaced ["ds"] ["all"] CRUD, [STATUS];
    "apps" "v1" "ControllerRevision" "controllerrevisions" "controllerrevision" namespaced [] [] CRUD, [];
    "batch" "v1" "Job" "jobs" "job" namespaced [] ["all"] CRUD, [STATUS];
    "batch" "v1" "CronJob" "cronjobs" "cronjob" namespaced ["cj"] ["all"] CRUD, [STATUS];
    "autoscaling" "v1" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" namespaced ["hpa"] ["all"] CRUD, [STATUS];
    "autoscaling" "v2" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" namespaced ["hpa"] ["all"] CRUD, [STATUS];
    "networking.k8s.io" "v1" "Ingress" "ingresses" "ingress" namespaced ["ing"] [] CRUD, [STATUS];
    "networking.k8s.io" "v1" "IngressClass" "ingressclasses" "ingressclass" cluster [] [] CRUD, [];
    "networking.k8s.io" "v1" "NetworkPolicy" "networkpolicies" "networkpolicy" namespaced ["netpol"] [] CRUD, [];
    "policy" "v1" "PodDisruptionBudget" "poddisruptionbudgets" "poddisruptionbudget" namespaced ["pdb"] [] CRUD, [STATUS];
    "storage.k8s.io" "v1" "StorageClass" "storageclasses" "storageclass" cluster ["sc"] [] CRUD, [];
    "storage.k8s.io" "v1" "CSIDriver" "csidrivers" "csidriver" cluster [] [] CRUD, [];
    "storage.k8s.io" "v1" "CSINode" "csinodes" "csinode" cluster [] [] CRUD, [];
    "storage.k8s.io" "v1" "VolumeAttachment" "volumeattachments" "volumeattachment" cluster [] [] CRUD, [STATUS];
    "coordination.k8s.io" "v1" "Lease" "leases" "lease" namespaced [] [] CRUD, [];
    "discovery.k8s.io" "v1" "EndpointSlice" "endpointslices" "endpointslice" namespaced [] [] CRUD, [];
    "events.k8s.io" "v1" "Event" "events" "event" namespaced ["ev"] [] CRUD, [];
    "scheduling.k8s.io" "v1" "PriorityClass" "priorityclasses" "priorityclass" cluster ["pc"] [] CRUD, [];
    "node.k8s.io" "v1" "RuntimeClass" "runtimeclasses" "runtimeclass" cluster [] [] CRUD, [];
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" "mutatingwebhookconfigurations" "mutatingwebhookconfiguration" cluster [] ["api-extensions"] CRUD, [];
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" "validatingwebhookconfigurations" "validatingwebhookconfiguration" cluster [] ["api-extensions"] CRUD, [];
    "rbac.authorization.k8s.io" "v1" "Role" "roles" "role" namespaced [] [] CRUD, [];
    "rbac.authorization.k8s.io" "v1" "RoleBinding" "rolebindings" "rolebinding" namespaced [] [] CRUD, [];
    "rbac.authorization.k8s.io" "v1" "ClusterRole" "clusterroles" "clusterrole" cluster [] [] CRUD, [];
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" "clusterrolebindings" "clusterrolebinding" cluster [] [] CRUD, [];
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" "selfsubjectaccessreviews" "" cluster [] [] CREATE_ONLY, [];
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" "selfsubjectrulesreviews" "" cluster [] [] CREATE_ONLY, [];
    "authorization.k8s.io" "v1" "SubjectAccessReview" "subjectaccessreviews" "" cluster [] [] CREATE_ONLY, [];
    "authentication.k8s.io" "v1" "SelfSubjectReview" "selfsubjectreviews" "" cluster [] [] CREATE_ONLY, [];
    "authentication.k8s.io" "v1" "TokenReview" "tokenreviews" "" cluster [] [] CREATE_ONLY, [];
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" "customresourcedefinitions" "customresourcedefinition" cluster ["crd", "crds"] ["api-extensions"] CRUD, [STATUS];
    "apiregistration.k8s.io" "v1" "APIService" "apiservices" "apiservice" cluster [] ["api-extensions"] CRUD, [STATUS];
}

/// Where a resource's objects are stored in a tenant's keyspace. Both versions of a
/// resource that has two (autoscaling v1 and v2) share the storage of the group's objects,
/// as upstream does; the stored form is the served one until conversion exists.
pub fn storage_prefix(rt: &ResourceType, namespace: Option<&str>) -> String {
    let group = if rt.group.is_empty() {
        "core"
    } else {
        &rt.group
    };
    match namespace {
        Some(ns) => format!("/{group}/{}/{ns}/", rt.plural),
        None => format!("/{group}/{}/", rt.plural),
    }
}

/// The key of one object.
pub fn storage_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", storage_prefix(rt, namespace))
}

/// What a storage key names: the inverse of [`storage_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageKey<'a> {
    /// `""` for the core group.
    pub group: &'a str,
    pub plural: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// Reads a storage key (`/<group>/<plural>/[<namespace>/]<name>`) back into its parts.
pub fn parse_storage_key(key: &str) -> Option<StorageKey<'_>> {
    let parts: Vec<&str> = key.strip_prefix('/')?.split('/').collect();
    let (group, plural, namespace, name) = match parts.as_slice() {
        [group, plural, name] => (*group, *plural, None, *name),
        [group, plural, namespace, name] => (*group, *plural, Some(*namespace), *name),
        _ => return None,
    };
    Some(StorageKey {
        group: if group == "core" { "" } else { group },
        plural,
        namespace,
        name,
    })
}

/// The built-in resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
    BUILTINS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .cloned()
}

/// The built-in resource of `kind` in `group/version`.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<Arc<ResourceType>> {
    BUILTINS
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .cloned()
}

/// The groups of `types`, each with its versions in preference order (Kubernetes' version
/// order), in the order the groups first appear.
pub fn groups<'a>(types: impl IntoIterator<Item = &'a ResourceType>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for rt in types.into_iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => {
                versions.push(rt.version.clone())
            }
            Some(_) => {}
            None => out.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    for (_, versions) in &mut out {
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

/// Kubernetes' version order as a key to sort by, highest first: GA before beta before
/// alpha, then the higher major and minor numbers; versions of no such form come last, in
/// alphabetical order (`v2, v1, v2beta1, v1beta2, v1alpha1, foo1`).
fn version_priority(version: &str) -> (u8, u8, u32, u32, std::cmp::Reverse<String>) {
    let kube = || -> Option<(u8, u32, u32)> {
        let rest = version.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u32 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (level, minor) = match tail.strip_prefix("beta") {
            Some(minor) => (2, minor),
            None => (1, tail.strip_prefix("alpha")?),
        };
        Some((level, major, minor.parse().ok()?))
    };
    match kube() {
        Some((level, major, minor)) => (1, level, major, minor, std::cmp::Reverse(String::new())),
        None => (0, 0, 0, 0, std::cmp::Reverse(version.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_read_back_into_their_parts() {
        let deployments = find("apps", "v1", "deployments").expect("built in");
        let key = storage_key(&deployments, Some("dev"), "web");
        assert_eq!(
            parse_storage_key(&key),
            Some(StorageKey {
                group: "apps",
                plural: "deployments",
                namespace: Some("dev"),
                name: "web"
            })
        );
        let namespaces = find("", "v1", "namespaces").expect("built in");
        let key = storage_key(&namespaces, None, "dev");
        let parts = parse_storage_key(&key).expect("a key");
        assert_eq!(
            (parts.group, parts.namespace, parts.name),
            ("", None, "dev")
        );
        assert!(parse_storage_key("/core").is_none());
        assert!(parse_storage_key("core/pods/a").is_none());
    }

    #[test]
    fn every_resource_is_unique_and_listable_and_watchable() {
        for (i, a) in BUILTINS.iter().enumerate() {
            let review = a.verbs == CREATE_ONLY;
            assert!(
                review || (a.verbs.contains(&"list") && a.verbs.contains(&"watch")),
                "{} lacks list/watch (the garbage collector needs both)",
                a.qualified()
            );
            for b in &BUILTINS[i + 1..] {
                assert!(
                    (&a.group, &a.version, &a.plural) != (&b.group, &b.version, &b.plural),
                    "{} twice",
                    a.qualified()
                );
            }
        }
    }

    #[test]
    fn keys_of_namespaced_and_cluster_scoped_objects() {
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(
            storage_key(deploy, Some("ns1"), "web"),
            "/apps/deployments/ns1/web"
        );
        let ns = &find("", "v1", "namespaces").expect("namespaces");
        assert_eq!(storage_key(ns, None, "default"), "/core/namespaces/default");
        // A namespace's prefix never covers a namespace whose name extends it.
        assert!(
            !storage_key(deploy, Some("ab"), "x").starts_with(&storage_prefix(deploy, Some("a")))
        );
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let groups = groups(BUILTINS.iter().map(|rt| &**rt));
        let autoscaling = groups
            .iter()
            .find(|(g, _)| *g == "autoscaling")
            .expect("autoscaling");
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }

    #[test]
    fn versions_in_kubernetes_order() {
        let mut versions = vec![
            "v1alpha1",
            "foo10",
            "v2",
            "v1beta1",
            "v1",
            "v11alpha2",
            "v10beta3",
            "foo1",
            "v1beta2",
        ];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            vec![
                "v2",
                "v1",
                "v10beta3",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "foo1",
                "foo10"
            ]
        );
    }
}
