//! What a tenant object becomes on a host, and what a host object's status becomes in its
//! tenant: pure functions, no IO, table-tested.
//!
//! Names: one host namespace per tenant namespace (the design note's D1, `PerNamespace`). A
//! tenant namespace `N` of tenant `T` is the host namespace `vc-T--N`; namespaced objects
//! keep their names, so hostnames, subdomains and StatefulSet DNS survive unchanged, and
//! placement (later: per namespace, over several hosts) moves whole host namespaces. A
//! name past its limit keeps its start (trailing `-` and `.` trimmed) and ends in `-` and
//! 10 hex digits of the SHA-256 of the whole name. Tenant names never contain `--` (the
//! control plane refuses them), so no two (tenant, namespace) pairs share a host
//! namespace. Names are never parsed back: the markers below say whose a host object is.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, Event, EventSource, LimitRange, Namespace, Node, NodeCondition, NodeSpec,
    NodeStatus, ObjectReference, Pod, PodSpec, PodStatus, ResourceQuota, Secret, Service,
    ServiceAccount, Taint,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use sha2::{Digest, Sha256};

/// Label: which platform's syncer made a host object (two platforms sharing a host never
/// touch each other's objects).
pub const MANAGED_BY: &str = "vcluster.io/managed-by";
/// Label: the tenant a host object belongs to.
pub const TENANT: &str = "vcluster.io/tenant";
/// Label: the tenant namespace a host object comes from.
pub const NAMESPACE: &str = "vcluster.io/namespace";
/// Annotations: the tenant object a host object is a copy of.
pub const OBJECT_NAME: &str = "vcluster.io/object-name";
pub const OBJECT_NAMESPACE: &str = "vcluster.io/object-namespace";
pub const OBJECT_UID: &str = "vcluster.io/object-uid";
pub const OBJECT_KIND: &str = "vcluster.io/object-kind";
/// The [`OBJECT_KIND`] of the copied kinds.
pub const CONFIG_MAP_KIND: &str = "v1/ConfigMap";
pub const SECRET_KIND: &str = "v1/Secret";
pub const SERVICE_KIND: &str = "v1/Service";
pub const QUOTA_KIND: &str = "v1/ResourceQuota";
pub const LIMIT_RANGE_KIND: &str = "v1/LimitRange";
/// The NetworkPolicy of every host namespace (see [`Scope::isolation_policy`]).
pub const ISOLATION_POLICY: &str = "vc-tenant-isolation";
/// Labels of a tenant Node mirrored from a host node. [`HOST_CLUSTER`] is also the
/// annotation that pins a tenant namespace to a host cluster.
pub const HOST_CLUSTER: &str = "vcluster.io/host-cluster";
/// Annotation on a tenant namespace: `spread` spreads it over every healthy host.
pub const PLACEMENT: &str = "vcluster.io/placement";
/// The [`PLACEMENT`] value that spreads a namespace.
pub const SPREAD: &str = "spread";
/// Annotation on a tenant namespace or pod: the host cluster the syncer placed it on (a
/// pod's is set once, before its host pod is made, and never changes: one tenant pod, at
/// most one host pod, ever).
pub const PLACED_ON: &str = "vcluster.io/placed-on";
pub const HOST_NODE: &str = "vcluster.io/host-node";
pub const MIRRORED_NODE: &str = "vcluster.io/mirrored-node";
/// Annotation on a tenant Service: its cluster IP on each host (`<host>=<ip>`).
pub const HOST_CLUSTER_IPS: &str = "vcluster.io/host-cluster-ips";
/// The service account every host pod runs as: made by the syncer in each host namespace,
/// bound to nothing, its token never mounted. A host pod never holds a host credential.
pub const WORKLOAD_ACCOUNT: &str = "vc-workload";

/// The longest namespace or object name that is a DNS label.
const LABEL_MAX: usize = 63;
/// The longest node name (a DNS subdomain).
const SUBDOMAIN_MAX: usize = 253;
/// Hex digits of the hash a shortened name ends with.
const HASH_HEX: usize = 10;

/// `name` if it has at most `max` characters; otherwise its start, trimmed of trailing `-`
/// and `.`, then `-` and [`HASH_HEX`] hex digits of the SHA-256 of the whole of it.
pub fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // Names are ASCII (DNS labels and subdomains), so any byte is a character boundary.
    let start = name[..max - HASH_HEX - 1].trim_end_matches(['-', '.']);
    format!("{start}-{}", &hex[..HASH_HEX])
}

/// Where one tenant's objects go on one host, and how they are marked there.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The platform instance (the `managed-by` label's value).
    pub platform: String,
    /// The tenant's name in the control plane.
    pub tenant: String,
    /// The host cluster's name (the suffix of mirrored node names).
    pub host: String,
}

/// The tenant object a host object was made from, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    /// Its `apiVersion/Kind` (none: not said).
    pub kind: Option<String>,
}

/// Why a pod may not run on a host, in words for the tenant's event and condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl Scope {
    /// The host namespace of tenant namespace `namespace`.
    pub fn host_namespace(&self, namespace: &str) -> String {
        shorten(&format!("vc-{}--{namespace}", self.tenant), LABEL_MAX)
    }

    /// The label selector of every host object of this tenant (what host watches select).
    pub fn selector(&self) -> String {
        format!(
            "{MANAGED_BY}={},{TENANT}={}",
            label_value(&self.platform),
            self.tenant
        )
    }

    /// Whether a host object carries this tenant's markers: only such objects are ever
    /// changed or deleted.
    pub fn owns(&self, host: &ObjectMeta) -> bool {
        let labels = host.labels.as_ref();
        let label = |key| labels.and_then(|l| l.get(key)).map(String::as_str);
        label(MANAGED_BY) == Some(label_value(&self.platform).as_str())
            && label(TENANT) == Some(self.tenant.as_str())
            && origin(host).is_some()
    }

    /// The markers of a host object made from the tenant object `tenant` of `kind` (its
    /// `apiVersion/Kind`), with the tenant's own labels and annotations (keys in our domain
    /// prefixed with `t.`, so that a tenant can never set our markers).
    fn metadata(&self, tenant: &ObjectMeta, kind: &str, namespace: Option<String>) -> ObjectMeta {
        let mut labels: BTreeMap<String, String> = tenant
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (escape_key(k), v.clone()))
            .collect();
        labels.insert(MANAGED_BY.into(), label_value(&self.platform));
        labels.insert(TENANT.into(), self.tenant.clone());
        let mut annotations: BTreeMap<String, String> = tenant
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (escape_key(k), v.clone()))
            .collect();
        if let Some(ns) = &tenant.namespace {
            labels.insert(NAMESPACE.into(), ns.clone());
            annotations.insert(OBJECT_NAMESPACE.into(), ns.clone());
        }
        annotations.insert(OBJECT_NAME.into(), tenant.name.clone().unwrap_or_default());
        annotations.insert(OBJECT_UID.into(), tenant.uid.clone().unwrap_or_default());
        annotations.insert(OBJECT_KIND.into(), kind.into());
        ObjectMeta {
            name: tenant.name.clone(),
            namespace,
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }
    }

    /// The host namespace of a tenant namespace. Only the markers go down: a tenant's
    /// namespace labels (say `pod-security.kubernetes.io/enforce: privileged`) must never
    /// become the host's.
    pub fn namespace_to_host(&self, tenant: &Namespace) -> Namespace {
        let name = tenant.metadata.name.clone().unwrap_or_default();
        let bare = ObjectMeta {
            name: Some(name.clone()),
            uid: tenant.metadata.uid.clone(),
            ..ObjectMeta::default()
        };
        let mut metadata = self.metadata(&bare, "v1/Namespace", None);
        metadata.name = Some(self.host_namespace(&name));
        if let Some(labels) = metadata.labels.as_mut() {
            labels.insert(NAMESPACE.into(), name);
        }
        Namespace {
            metadata,
            ..Namespace::default()
        }
    }

    /// The metadata of an object the syncer keeps in the host namespace of `namespace` for
    /// the namespace itself (no tenant object is its origin): named `name`, with the
    /// tenant's labels.
    fn namespace_object(&self, namespace: &str, name: &str) -> ObjectMeta {
        let mut labels = BTreeMap::new();
        labels.insert(MANAGED_BY.to_owned(), label_value(&self.platform));
        labels.insert(TENANT.to_owned(), self.tenant.clone());
        labels.insert(NAMESPACE.to_owned(), namespace.to_owned());
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.host_namespace(namespace)),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    /// The service account host pods of `namespace` run as.
    pub fn workload_account(&self, namespace: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: self.namespace_object(namespace, WORKLOAD_ACCOUNT),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    /// The NetworkPolicy of the host namespace of `namespace`: its pods admit traffic only
    /// from pods in the host namespaces of the same tenant (on this platform), so that no
    /// other tenant's pods (nor any other pod of the host) reach them. Every host
    /// namespace has one, so the same holds the other way. What leaves them (DNS, the
    /// tenant's API) is not restricted. Enforced by the host's network plugin.
    pub fn isolation_policy(&self, namespace: &str) -> NetworkPolicy {
        let mut tenant = BTreeMap::new();
        tenant.insert(MANAGED_BY.to_owned(), label_value(&self.platform));
        tenant.insert(TENANT.to_owned(), self.tenant.clone());
        NetworkPolicy {
            metadata: self.namespace_object(namespace, ISOLATION_POLICY),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(tenant),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ..NetworkPolicyIngressRule::default()
                }]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    /// The host copy of a tenant ResourceQuota: its limits hold on the host namespace too,
    /// so that a tenant cannot take more of a host than its quota says.
    pub fn quota_to_host(&self, tenant: &ResourceQuota) -> ResourceQuota {
        let namespace = tenant.metadata.namespace.as_deref().unwrap_or_default();
        ResourceQuota {
            metadata: self.metadata(
                &tenant.metadata,
                QUOTA_KIND,
                Some(self.host_namespace(namespace)),
            ),
            spec: tenant.spec.clone(),
            status: None,
        }
    }

    /// The host copy of a tenant LimitRange: the same defaults and bounds on the host.
    pub fn limit_range_to_host(&self, tenant: &LimitRange) -> LimitRange {
        let namespace = tenant.metadata.namespace.as_deref().unwrap_or_default();
        LimitRange {
            metadata: self.metadata(
                &tenant.metadata,
                LIMIT_RANGE_KIND,
                Some(self.host_namespace(namespace)),
            ),
            spec: tenant.spec.clone(),
        }
    }

    /// The host pod of a tenant pod: same name, in the host namespace of its namespace,
    /// marked; running as [`WORKLOAD_ACCOUNT`] with no host token mounted; without what
    /// names things only the tenant has (its node, priority class, scheduler); service
    /// links off (the host's Services are not the tenant's: the syncer gives the tenant's
    /// instead, [`service_env`]).
    ///
    /// The tenant's own credential reaches it instead (the design note's D9): every
    /// projected volume holding a service-account token reads it, with the tenant's CA and
    /// namespace, from the pod's token Secret ([`token_secret`], see [`Projections`]), which
    /// the syncer fills with tokens the tenant issues for the tenant pod. The namespace the
    /// downward API gives (`metadata.namespace`) is the tenant's: a literal value in `env`.
    ///
    /// The ConfigMaps and Secrets it names go down beside it (`copies.rs`), under the same
    /// names. Not yet translated (the syncer issue's next steps): DNS, the API's address.
    pub fn pod_to_host(&self, pod: &Pod) -> Pod {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let metadata = self.metadata(
            &pod.metadata,
            "v1/Pod",
            Some(self.host_namespace(&namespace)),
        );
        let mut spec = pod.spec.clone().unwrap_or_default();
        spec.node_name = spec
            .node_name
            .as_deref()
            .and_then(|n| self.host_node(n))
            .map(str::to_owned);
        spec.service_account_name = Some(WORKLOAD_ACCOUNT.into());
        spec.service_account = None;
        spec.automount_service_account_token = Some(false);
        spec.enable_service_links = Some(false);
        spec.priority_class_name = None;
        spec.priority = None;
        spec.preemption_policy = None;
        spec.scheduler_name = None;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        project_tokens(&mut spec, &token_secret(name));
        literal_namespace(&mut spec, &namespace);
        Pod {
            metadata,
            spec: Some(spec),
            status: None,
        }
    }

    /// The tenant's name for host node `node`: `<node>.<host>`, unique across hosts
    /// (shortened past 253 characters).
    pub fn mirrored_node(&self, node: &str) -> String {
        shorten(&format!("{node}.{}", self.host), SUBDOMAIN_MAX)
    }

    /// The host node a tenant node name mirrors on this host, if it is one of this host's.
    pub fn host_node<'a>(&self, tenant_node: &'a str) -> Option<&'a str> {
        tenant_node
            .strip_suffix(self.host.as_str())
            .and_then(|n| n.strip_suffix('.'))
            .filter(|n| !n.is_empty())
    }

    /// The tenant Node mirroring host node `host`: its topology labels, capacity,
    /// conditions, addresses and node info; no taints of the host's (they are the host's
    /// business: pods that reach the host are scheduled there).
    pub fn node_to_tenant(&self, host: &Node) -> Node {
        let host_name = host.metadata.name.clone().unwrap_or_default();
        let name = self.mirrored_node(&host_name);
        let mut labels: BTreeMap<String, String> = host
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| mirrored_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("kubernetes.io/hostname".into(), label_value(&name));
        labels.insert(HOST_CLUSTER.into(), self.host.clone());
        labels.insert(HOST_NODE.into(), label_value(&host_name));
        labels.insert(MIRRORED_NODE.into(), "true".into());
        let status = host.status.as_ref().map(|s| NodeStatus {
            addresses: s.addresses.clone(),
            allocatable: s.allocatable.clone(),
            capacity: s.capacity.clone(),
            conditions: s.conditions.clone(),
            node_info: s.node_info.clone(),
            ..NodeStatus::default()
        });
        Node {
            metadata: ObjectMeta {
                name: Some(name),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                unschedulable: host.spec.as_ref().and_then(|s| s.unschedulable),
                ..NodeSpec::default()
            }),
            status,
        }
    }
}

/// The ConfigMaps and Secrets a pod spec names (volumes, projected sources, `env`,
/// `envFrom`, image pull secrets), which must exist beside its host pod.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

impl References {
    /// What `spec` names, in every container (init and ephemeral ones too).
    pub fn of(spec: &PodSpec) -> Self {
        let mut refs = Self::default();
        for volume in spec.volumes.iter().flatten() {
            if let Some(c) = &volume.config_map {
                refs.config_maps.insert(c.name.clone());
            }
            if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                refs.secrets.insert(name);
            }
            let sources = volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten());
            for source in sources {
                if let Some(c) = &source.config_map {
                    refs.config_maps.insert(c.name.clone());
                }
                if let Some(s) = &source.secret {
                    refs.secrets.insert(s.name.clone());
                }
            }
        }
        for pull in spec.image_pull_secrets.iter().flatten() {
            refs.secrets.insert(pull.name.clone());
        }
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        let ephemeral = spec.ephemeral_containers.iter().flatten();
        let envs = containers
            .map(|c| (&c.env, &c.env_from))
            .chain(ephemeral.map(|c| (&c.env, &c.env_from)));
        for (env, env_from) in envs {
            for from in env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
                if let Some(c) = &from.config_map_key_ref {
                    refs.config_maps.insert(c.name.clone());
                }
                if let Some(s) = &from.secret_key_ref {
                    refs.secrets.insert(s.name.clone());
                }
            }
            for from in env_from.iter().flatten() {
                if let Some(c) = &from.config_map_ref {
                    refs.config_maps.insert(c.name.clone());
                }
                if let Some(s) = &from.secret_ref {
                    refs.secrets.insert(s.name.clone());
                }
            }
        }
        refs.config_maps.retain(|n| !n.is_empty());
        refs.secrets.retain(|n| !n.is_empty());
        refs
    }
}

impl Scope {
    /// The host copy of a tenant ConfigMap: marked, same name and content.
    pub fn config_map_to_host(&self, tenant: &ConfigMap) -> ConfigMap {
        let namespace = tenant.metadata.namespace.as_deref().unwrap_or_default();
        ConfigMap {
            metadata: self.metadata(
                &tenant.metadata,
                CONFIG_MAP_KIND,
                Some(self.host_namespace(namespace)),
            ),
            data: tenant.data.clone(),
            binary_data: tenant.binary_data.clone(),
            immutable: tenant.immutable,
        }
    }

    /// The host copy of a tenant Secret: marked, same name and data. A tenant's
    /// service-account token Secret goes down as `Opaque`, so that no host controller acts
    /// on it as one of the host's.
    pub fn secret_to_host(&self, tenant: &Secret) -> Secret {
        let namespace = tenant.metadata.namespace.as_deref().unwrap_or_default();
        let type_ = match tenant.type_.as_deref() {
            Some("kubernetes.io/service-account-token") => Some("Opaque".to_owned()),
            other => other.map(str::to_owned),
        };
        Secret {
            metadata: self.metadata(
                &tenant.metadata,
                SECRET_KIND,
                Some(self.host_namespace(namespace)),
            ),
            data: tenant.data.clone(),
            string_data: None,
            type_,
            immutable: tenant.immutable,
        }
    }
}

impl Scope {
    /// The host copy of a tenant Service. Its selector, ports, type and policies are the
    /// tenant's (host pods carry the tenant pods' labels, so the selector selects the
    /// copies of the pods it selects in the tenant); its addresses are the host's: a new
    /// copy (`existing` none) asks for the tenant's cluster IP and node ports, an existing
    /// one keeps what the host gave it. `externalIPs` never go down (on the host they
    /// would capture other traffic to those addresses).
    pub fn service_to_host(&self, tenant: &Service, existing: Option<&Service>) -> Service {
        let namespace = tenant.metadata.namespace.as_deref().unwrap_or_default();
        let mut metadata = self.metadata(
            &tenant.metadata,
            SERVICE_KIND,
            Some(self.host_namespace(namespace)),
        );
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.remove(&escape_key(HOST_CLUSTER_IPS));
        }
        let mut spec = tenant.spec.clone().unwrap_or_default();
        spec.external_ips = None;
        if let Some(host) = existing.and_then(|e| e.spec.as_ref()) {
            spec.cluster_ip = host.cluster_ip.clone();
            spec.cluster_ips = host.cluster_ips.clone();
            spec.ip_families = host.ip_families.clone();
            spec.ip_family_policy = host.ip_family_policy.clone();
            spec.health_check_node_port = host.health_check_node_port;
            for port in spec.ports.iter_mut().flatten() {
                port.node_port = host
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.port == port.port && p.protocol == port.protocol)
                    .and_then(|p| p.node_port);
            }
        }
        Service {
            metadata,
            spec: Some(spec),
            status: None,
        }
    }
}

/// A new Service copy without the addresses it asked for (a headless one stays headless),
/// for the host to allocate its own: none if it asked for none.
pub fn without_addresses(wanted: &Service) -> Option<Service> {
    let mut second = wanted.clone();
    let spec = second.spec.as_mut()?;
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let asked = (!headless && spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()))
        || spec.health_check_node_port.is_some()
        || spec.ports.iter().flatten().any(|p| p.node_port.is_some());
    if !asked {
        return None;
    }
    if !headless {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
    }
    spec.health_check_node_port = None;
    for port in spec.ports.iter_mut().flatten() {
        port.node_port = None;
    }
    Some(second)
}

/// An Event the syncer records in a tenant about one of its objects, in core/v1 (what
/// `kubectl describe` and `kubectl get events` read, and what a kubelet and the scheduler,
/// whose part the syncer plays, record): named after the object and a hash of what it
/// says, so that a repeat finds it (and adds to its `count`).
pub fn tenant_event(
    about: &ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> Event {
    let digest = Sha256::digest(format!("{:?}/{reason}/{message}", about.uid).as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let object = about.name.as_deref().unwrap_or("object");
    Event {
        metadata: ObjectMeta {
            name: Some(shorten(&format!("{object}.{hex}"), SUBDOMAIN_MAX)),
            namespace: about.namespace.clone().or_else(|| Some("default".into())),
            ..ObjectMeta::default()
        },
        involved_object: about.clone(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        type_: Some(type_.to_owned()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        reporting_component: Some(SYNCER.to_owned()),
        source: Some(EventSource {
            component: Some(SYNCER.to_owned()),
            host: None,
        }),
        ..Event::default()
    }
}

/// The component the syncer's events name.
const SYNCER: &str = "vcluster-syncer";

/// The taint of a node out of touch, as upstream's node lifecycle controller sets it.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// What a mirrored node becomes while its host is unreachable, as upstream's node
/// lifecycle controller makes a node whose kubelet stopped posting its status: every
/// condition `Unknown` (reason `NodeStatusUnknown`) and the [`UNREACHABLE_TAINT`] with
/// effects `NoSchedule` and `NoExecute`, added at `now`. None if it is so already.
pub fn unreachable_node(node: &Node, now: &Time) -> Option<(Vec<NodeCondition>, Vec<Taint>)> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let unknown = conditions.iter().all(|c| c.status == "Unknown");
    let tainted = |effect: &str| {
        taints
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == effect)
    };
    if unknown && tainted("NoSchedule") && tainted("NoExecute") {
        return None;
    }
    let conditions = conditions
        .into_iter()
        .map(|c| NodeCondition {
            status: "Unknown".into(),
            reason: Some("NodeStatusUnknown".into()),
            message: Some("The host cluster stopped answering.".into()),
            last_transition_time: if c.status == "Unknown" {
                c.last_transition_time
            } else {
                Some(now.clone())
            },
            ..c
        })
        .collect();
    let mut taints: Vec<Taint> = taints
        .into_iter()
        .filter(|t| t.key != UNREACHABLE_TAINT)
        .collect();
    for effect in ["NoSchedule", "NoExecute"] {
        taints.push(Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: effect.into(),
            time_added: Some(now.clone()),
            value: None,
        });
    }
    Some((conditions, taints))
}

/// A mirrored node's taints without the [`UNREACHABLE_TAINT`], once its host answers
/// again: none if it has no such taint.
pub fn reachable_taints(node: &Node) -> Option<Vec<Taint>> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref())?;
    taints.iter().any(|t| t.key == UNREACHABLE_TAINT).then(|| {
        taints
            .iter()
            .filter(|t| t.key != UNREACHABLE_TAINT)
            .cloned()
            .collect()
    })
}

/// The value of [`HOST_CLUSTER_IPS`] for the tenant Service `tenant` whose copy on `host`
/// is `copy`: the entries of the other hosts it already has (a spread namespace's Services
/// have a copy on each host), with `host`'s entry made from the copy's cluster IP (none for
/// a headless or ExternalName copy), in host order; none if no entry is left.
pub fn host_cluster_ips(tenant: &Service, copy: &Service, host: &str) -> Option<String> {
    let mut entries: BTreeMap<String, String> = tenant
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOST_CLUSTER_IPS))
        .into_iter()
        .flat_map(|ips| ips.split(','))
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(name, _)| *name != host)
        .map(|(name, ip)| (name.to_owned(), ip.to_owned()))
        .collect();
    if let Some(ip) = copy
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
    {
        entries.insert(host.to_owned(), ip.to_owned());
    }
    (!entries.is_empty()).then(|| {
        entries
            .iter()
            .map(|(name, ip)| format!("{name}={ip}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A tenant Service's cluster IP on `host`, as its [`HOST_CLUSTER_IPS`] annotation says
/// (`<host>=<ip>`, comma-separated over hosts): none until its copy has one.
pub fn cluster_ip_on(service: &Service, host: &str) -> Option<String> {
    let ips = service
        .metadata
        .annotations
        .as_ref()?
        .get(HOST_CLUSTER_IPS)?;
    ips.split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .find(|(name, _)| *name == host)
        .map(|(_, ip)| ip.to_owned())
}

/// The service environment variables a kubelet gives a container
/// (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]` and the Docker-link `<NAME>_PORT*`
/// ones) for the tenant Services of its namespace, with their addresses on `host` (the
/// host pod has `enableServiceLinks: false`, since the host's own Services are not the
/// tenant's). Services without an address there yet (a copy not made yet, headless,
/// ExternalName) give none, as upstream's give none for a Service made after the pod.
/// In name order.
pub fn service_env(services: &[Service], host: &str) -> Vec<EnvVar> {
    let var = |name: String, value: String| EnvVar {
        name,
        value: Some(value),
        value_from: None,
    };
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut env = Vec::new();
    for service in sorted {
        let Some(ip) = cluster_ip_on(service, host) else {
            continue;
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
        env.push(var(format!("{prefix}_SERVICE_HOST"), ip.clone()));
        env.push(var(
            format!("{prefix}_SERVICE_PORT"),
            first.port.to_string(),
        ));
        for port in &ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let key = format!("{prefix}_SERVICE_PORT_{}", env_name(name));
                env.push(var(key, port.port.to_string()));
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP").to_uppercase();
            let scheme = protocol.to_lowercase();
            let address = if ip.contains(':') {
                format!("[{ip}]:{}", port.port)
            } else {
                format!("{ip}:{}", port.port)
            };
            if i == 0 {
                env.push(var(
                    format!("{prefix}_PORT"),
                    format!("{scheme}://{address}"),
                ));
            }
            let link = format!("{prefix}_PORT_{}_{protocol}", port.port);
            env.push(var(link.clone(), format!("{scheme}://{address}")));
            env.push(var(format!("{link}_PROTO"), scheme));
            env.push(var(format!("{link}_PORT"), port.port.to_string()));
            env.push(var(format!("{link}_ADDR"), ip.clone()));
        }
    }
    env
}

/// A name as an environment variable's: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// Gives every container of a host pod the variables of `env` it does not set itself (its
/// own win, as the kubelet lets them), ahead of its own.
pub fn add_env(pod: &mut Pod, env: &[EnvVar]) {
    if env.is_empty() {
        return;
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        let own = container.env.take().unwrap_or_default();
        let mut all: Vec<EnvVar> = env
            .iter()
            .filter(|e| !own.iter().any(|o| o.name == e.name))
            .cloned()
            .collect();
        all.extend(own);
        container.env = Some(all);
    }
}

impl Scope {
    /// The tenant's copy of a host Event about the host pod of `pod` (its tenant pod): the
    /// same name, reason, type, counts and times, about the tenant pod, in the tenant's
    /// words: the host namespace `host_namespace` is the tenant pod's namespace and host
    /// node names are their mirrored names (the scheduler's "Successfully assigned
    /// vc-t--web/api to sim-0" reads "... web/api to sim-0.<host>", the kubelet's source
    /// host is the mirrored node).
    pub fn event_to_tenant(&self, host: &Event, pod: &Pod, host_namespace: &str) -> Event {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let node = |name: &str| self.mirrored_node(name);
        let mut message = host.message.clone().unwrap_or_default();
        message = message.replace(&format!("{host_namespace}/"), &format!("{namespace}/"));
        let source = host.source.as_ref().map(|s| EventSource {
            component: s.component.clone(),
            host: s.host.as_deref().map(node),
        });
        // The scheduler's `Scheduled` names the node last.
        if host.reason.as_deref() == Some("Scheduled")
            && let Some((start, host_node)) = message.rsplit_once(" to ")
        {
            message = format!("{start} to {}", node(host_node));
        }
        let reporting_instance = match (&host.source, &host.reporting_instance) {
            (Some(s), Some(instance)) if s.host.as_deref() == Some(instance) => {
                Some(node(instance))
            }
            (_, instance) => instance.clone(),
        };
        Event {
            metadata: ObjectMeta {
                name: host.metadata.name.clone(),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: Some(namespace),
                uid: pod.metadata.uid.clone(),
                field_path: host.involved_object.field_path.clone(),
                ..ObjectReference::default()
            },
            reason: host.reason.clone(),
            message: Some(message),
            type_: host.type_.clone(),
            count: host.count,
            first_timestamp: host.first_timestamp.clone(),
            last_timestamp: host.last_timestamp.clone(),
            event_time: host.event_time.clone(),
            action: host.action.clone(),
            reporting_component: host.reporting_component.clone(),
            reporting_instance,
            source,
            ..Event::default()
        }
    }
}

/// The tenant object a host object was made from (none: not made by a syncer).
pub fn origin(host: &ObjectMeta) -> Option<Origin> {
    let annotations = host.annotations.as_ref()?;
    Some(Origin {
        namespace: annotations.get(OBJECT_NAMESPACE).cloned(),
        name: annotations.get(OBJECT_NAME)?.clone(),
        uid: annotations.get(OBJECT_UID)?.clone(),
        kind: annotations.get(OBJECT_KIND).cloned(),
    })
}

/// The host's policy for tenant pods: nothing that reaches past the pod's own sandbox
/// (privileged containers, the node's network, PID or IPC namespace, its files). Checked
/// before anything reaches a host. (Per-tenant exceptions come with the platform's
/// VirtualCluster resource.)
pub fn host_policy(pod: &Pod) -> Result<(), Refused> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    for (on, field) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if on == Some(true) {
            return Err(Refused(format!(
                "{field} is not allowed on the host cluster"
            )));
        }
    }
    if let Some(volume) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.host_path.is_some())
    {
        return Err(Refused(format!(
            "volume {:?}: hostPath volumes are not allowed on the host cluster",
            volume.name
        )));
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for container in containers {
        if container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            == Some(true)
        {
            return Err(Refused(format!(
                "container {:?}: privileged containers are not allowed on the host cluster",
                container.name
            )));
        }
    }
    Ok(())
}

/// The status the tenant pod gets from its host pod: the host's, with only the containers
/// the tenant declared (a host may inject sidecars) and the tenant's own QoS class.
pub fn status_up(tenant: &Pod, host: &PodStatus) -> PodStatus {
    let declared = |names: Vec<String>| {
        move |status: &k8s_openapi::api::core::v1::ContainerStatus| names.contains(&status.name)
    };
    let spec = tenant.spec.as_ref();
    let containers: Vec<String> = spec
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let init: Vec<String> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let mut status = host.clone();
    if let Some(statuses) = status.container_statuses.as_mut() {
        statuses.retain(declared(containers));
    }
    if let Some(statuses) = status.init_container_statuses.as_mut() {
        statuses.retain(declared(init));
    }
    status.qos_class = tenant
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .or(status.qos_class);
    status
}

/// A tenant label or annotation key as it is on the host: keys in our own domain
/// (`vcluster.io/`, `*.vcluster.io/`) get a `t.` prefix, so that a tenant cannot forge the
/// markers; everything else unchanged. The node simulator's keys (`nodesim.vcluster.io/`)
/// say how the simulated workload behaves (when it exits, how long it takes to stop), so
/// they go down as they are, to the host's simulated kubelets.
pub fn escape_key(key: &str) -> String {
    match key.split_once('/') {
        Some(("nodesim.vcluster.io", _)) => key.to_owned(),
        Some((prefix, _)) if prefix == "vcluster.io" || prefix.ends_with(".vcluster.io") => {
            format!("t.{key}")
        }
        _ => key.to_owned(),
    }
}

/// A value fit for a label (at most 63 characters).
fn label_value(value: &str) -> String {
    shorten(value, LABEL_MAX)
}

/// Host node labels a tenant sees on its mirrored node: topology, architecture and
/// operating system, instance type.
fn mirrored_label(key: &str) -> bool {
    key.starts_with("topology.kubernetes.io/")
        || matches!(
            key,
            "kubernetes.io/arch" | "kubernetes.io/os" | "node.kubernetes.io/instance-type"
        )
}

/// The name of a host pod's token Secret, beside it in its host namespace.
pub fn token_secret(pod: &str) -> String {
    shorten(&format!("{pod}-sa-token"), SUBDOMAIN_MAX)
}

/// The key of the token Secret that holds the tenant's CA (what its `kube-root-ca.crt`
/// ConfigMap holds as `ca.crt`).
pub const TOKEN_SECRET_CA: &str = "ca.crt";
/// The key of the token Secret that holds the tenant namespace's name.
pub const TOKEN_SECRET_NAMESPACE: &str = "namespace";
/// Annotation on a token Secret: when its tokens are due to be issued again.
pub const TOKEN_REFRESH: &str = "vcluster.io/token-refresh";
/// The life of a projected token whose projection names none (upstream's default).
const PROJECTED_TOKEN_SECONDS: i64 = 3600;

/// What a host pod's token Secret must hold for its projected volumes, as
/// [`Scope::pod_to_host`] rewrote them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Projections {
    /// One token per projected `serviceAccountToken` source.
    pub tokens: Vec<Projection>,
    /// Whether the tenant's CA goes in, under [`TOKEN_SECRET_CA`].
    pub ca: bool,
    /// Whether the tenant namespace's name goes in, under [`TOKEN_SECRET_NAMESPACE`].
    pub namespace: bool,
}

impl Projections {
    /// The token Secret's content, as the host pod's volumes read it, for the tenant pod
    /// `pod`.
    pub fn of(pod: &Pod) -> Self {
        let mut spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        project_tokens(&mut spec, &token_secret(name))
    }

    /// Whether the pod needs no token Secret.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && !self.ca && !self.namespace
    }
}

/// A token the tenant issues for a pod, as one projected source asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// Its key in the token Secret.
    pub key: String,
    /// The audience it is for (none: the tenant API's own).
    pub audience: Option<String>,
    /// Its life.
    pub expiration_seconds: i64,
}

/// Rewrites every projected volume that holds a service-account token so that it reads
/// the token, the tenant's CA (its `kube-root-ca.crt` source) and the tenant namespace
/// (a downward `metadata.namespace` item) from the token Secret `secret`; what the Secret
/// must hold.
fn project_tokens(spec: &mut PodSpec, secret: &str) -> Projections {
    use k8s_openapi::api::core::v1::{KeyToPath, SecretProjection, VolumeProjection};
    let mut wanted = Projections::default();
    for volume in spec.volumes.iter_mut().flatten() {
        let Some(projected) = volume.projected.as_mut() else {
            continue;
        };
        let sources = projected.sources.take().unwrap_or_default();
        if !sources.iter().any(|s| s.service_account_token.is_some()) {
            projected.sources = Some(sources);
            continue;
        }
        let mut items = Vec::new();
        let mut kept = Vec::new();
        for (i, mut source) in sources.into_iter().enumerate() {
            if let Some(token) = &source.service_account_token {
                let key = format!("{}.token.{i}", volume.name);
                items.push(KeyToPath {
                    key: key.clone(),
                    path: token.path.clone(),
                    mode: None,
                });
                wanted.tokens.push(Projection {
                    key,
                    audience: token.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: token.expiration_seconds.unwrap_or(PROJECTED_TOKEN_SECONDS),
                });
                continue;
            }
            if let Some(ca) = source
                .config_map
                .as_ref()
                .filter(|c| c.name == "kube-root-ca.crt")
            {
                let paths: Vec<KeyToPath> = match &ca.items {
                    Some(given) => given
                        .iter()
                        .filter(|item| item.key == TOKEN_SECRET_CA)
                        .cloned()
                        .collect(),
                    None => vec![KeyToPath {
                        key: TOKEN_SECRET_CA.into(),
                        path: TOKEN_SECRET_CA.into(),
                        mode: None,
                    }],
                };
                wanted.ca |= !paths.is_empty();
                items.extend(paths);
                continue;
            }
            if let Some(downward) = source.downward_api.as_mut() {
                let (namespace, others): (Vec<_>, Vec<_>) = downward
                    .items
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .partition(|item| {
                        item.field_ref
                            .as_ref()
                            .is_some_and(|f| f.field_path == "metadata.namespace")
                    });
                for item in namespace {
                    wanted.namespace = true;
                    items.push(KeyToPath {
                        key: TOKEN_SECRET_NAMESPACE.into(),
                        path: item.path,
                        mode: item.mode,
                    });
                }
                if others.is_empty() {
                    continue;
                }
                downward.items = Some(others);
            }
            kept.push(source);
        }
        kept.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: secret.to_owned(),
                items: Some(items),
                optional: None,
            }),
            ..VolumeProjection::default()
        });
        projected.sources = Some(kept);
    }
    wanted
}

/// Gives every container a tenant namespace's name where it asked the downward API for
/// `metadata.namespace` (on the host, that would be the host namespace).
fn literal_namespace(spec: &mut PodSpec, namespace: &str) {
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for env in containers.flat_map(|c| c.env.iter_mut().flatten()) {
        let asks = env
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .is_some_and(|f| f.field_path == "metadata.namespace");
        if asks {
            env.value_from = None;
            env.value = Some(namespace.to_owned());
        }
    }
}

/// When a token issued at `issued` to expire at `expires` is issued again: at 80% of its
/// life, as the kubelet renews projected tokens.
pub fn token_refresh(issued: jiff::Timestamp, expires: jiff::Timestamp) -> jiff::Timestamp {
    let life = expires.duration_since(issued);
    issued + life * 4 / 5
}

impl Scope {
    /// The token Secret of host pod `host`, made for the tenant pod `pod`: marked as made
    /// from it (kind `v1/Pod`, so the Secret copier never takes it for a copy), owned by
    /// the host pod (the host's garbage collector deletes it with the pod), holding `data`,
    /// due to be issued again at `refresh`.
    pub fn token_secret_to_host(
        &self,
        pod: &Pod,
        host: &Pod,
        data: BTreeMap<String, k8s_openapi::ByteString>,
        refresh: jiff::Timestamp,
    ) -> Secret {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let bare = ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut metadata = self.metadata(&bare, "v1/Pod", Some(self.host_namespace(namespace)));
        metadata.name = Some(token_secret(bare.name.as_deref().unwrap_or_default()));
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.insert(
                TOKEN_REFRESH.into(),
                refresh.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
        }
        metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: host.metadata.name.clone().unwrap_or_default(),
            uid: host.metadata.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        }]);
        Secret {
            metadata,
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }
}

/// When a token Secret is due to be issued again (none: never said, so now).
pub fn token_refresh_of(secret: &Secret) -> Option<jiff::Timestamp> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(TOKEN_REFRESH)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            platform: "vcluster".into(),
            tenant: "acme".into(),
            host: "eu-1".into(),
        }
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn long_names_are_shortened_with_a_hash_of_the_whole() {
        // The design note's vectors.
        for (name, short) in [
            (
                "vc-acme--payments-production-eu-west-1-blue-green-canary-rollout",
                "vc-acme--payments-production-eu-west-1-blue-green-ca-3bc7af15ac",
            ),
            (
                "my-very-long-statefulset-name-with-many-words-0-x-production-eu-west",
                "my-very-long-statefulset-name-with-many-words-0-x-pr-09d4723750",
            ),
            ("vc-acme--web", "vc-acme--web"),
        ] {
            assert_eq!(shorten(name, LABEL_MAX), short, "{name}");
            assert!(shorten(name, LABEL_MAX).len() <= LABEL_MAX);
        }
        // A cut that ends in `-` or `.` is trimmed before the hash.
        let name = format!("{}-{}", "a".repeat(51), "b".repeat(20));
        let short = shorten(&name, LABEL_MAX);
        assert!(
            short.starts_with(&format!("{}-", "a".repeat(51))),
            "{short}"
        );
        assert_eq!(short.len(), 51 + 1 + HASH_HEX);
    }

    #[test]
    fn namespaces_are_one_host_namespace_each_and_distinct_across_tenants() {
        let a = scope();
        let b = Scope {
            tenant: "acme-web".into(),
            ..scope()
        };
        assert_eq!(a.host_namespace("web"), "vc-acme--web");
        assert_ne!(a.host_namespace("web-x"), b.host_namespace("x"));
        assert_eq!(
            a.selector(),
            "vcluster.io/managed-by=vcluster,vcluster.io/tenant=acme"
        );
    }

    #[test]
    fn a_pod_goes_down_marked_without_the_tenants_credentials_or_names() {
        let tenant = pod(json!({
            "metadata": {"name": "web-1", "namespace": "web", "uid": "u-1",
                "labels": {"app": "web", "vcluster.io/tenant": "forged", "sync.vcluster.io/x": "forged too"},
                "annotations": {"note": "kept", "nodesim.vcluster.io/exit-code": "3"}, "finalizers": ["x"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web", "uid": "rs"}]},
            "spec": {
                "nodeName": "sim-0.eu-1",
                "serviceAccountName": "builder",
                "priorityClassName": "high", "priority": 1000, "schedulerName": "custom",
                "containers": [{"name": "app", "image": "nginx",
                    "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                                     {"name": "data", "mountPath": "/data"}]}],
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt"}}]}},
                    {"name": "data", "emptyDir": {}}]
            },
            "status": {"phase": "Running"}
        }));
        let host = scope().pod_to_host(&tenant);
        let meta = &host.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-1"));
        assert_eq!(meta.namespace.as_deref(), Some("vc-acme--web"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[TENANT], "acme", "the tenant cannot forge a marker");
        assert_eq!(labels["t.vcluster.io/tenant"], "forged");
        assert_eq!(labels["t.sync.vcluster.io/x"], "forged too");
        assert_eq!(
            meta.annotations.as_ref().expect("annotations")["nodesim.vcluster.io/exit-code"],
            "3",
            "how the simulated workload behaves goes down as it is"
        );
        assert_eq!(labels[NAMESPACE], "web");
        assert_eq!(labels[MANAGED_BY], "vcluster");
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["note"], "kept");
        assert_eq!(annotations[OBJECT_UID], "u-1");
        assert_eq!(annotations[OBJECT_KIND], "v1/Pod");
        assert!(meta.finalizers.is_none() && meta.owner_references.is_none());
        assert!(scope().owns(meta));
        assert_eq!(
            origin(meta),
            Some(Origin {
                namespace: Some("web".into()),
                name: "web-1".into(),
                uid: "u-1".into(),
                kind: Some("v1/Pod".into()),
            })
        );
        let spec = host.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("sim-0"));
        assert_eq!(spec.service_account_name.as_deref(), Some(WORKLOAD_ACCOUNT));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert!(spec.priority_class_name.is_none() && spec.priority.is_none());
        assert!(spec.scheduler_name.is_none());
        let volumes: Vec<_> = spec.volumes.iter().flatten().map(|v| &v.name).collect();
        assert_eq!(volumes, ["kube-api-access-x", "data"]);
        let sources = serde_json::to_value(&spec.volumes.as_ref().expect("volumes")[0])
            .expect("json")["projected"]["sources"]
            .clone();
        assert_eq!(
            sources,
            json!([{"secret": {"name": "web-1-sa-token", "items": [
                {"key": "kube-api-access-x.token.0", "path": "token"},
                {"key": "ca.crt", "path": "ca.crt"}]}}]),
            "no host token: the tenant's, from the pod's token Secret"
        );
        assert!(host.status.is_none());
    }

    /// The variables a kubelet derives from Services, with the host's addresses: a
    /// Service without one on this host (no copy yet, headless) gives none, and a
    /// container's own variable wins.
    #[test]
    fn service_variables_carry_the_hosts_addresses() {
        let service = |name: &str, ips: Option<&str>, ports: serde_json::Value| -> Service {
            let mut s =
                json!({"metadata": {"name": name, "namespace": "web"}, "spec": {"ports": ports}});
            if let Some(ips) = ips {
                s["metadata"]["annotations"] = json!({HOST_CLUSTER_IPS: ips});
            }
            serde_json::from_value(s).expect("a service")
        };
        let services = [
            service(
                "redis-main",
                Some("us-1=10.0.0.1,eu-1=10.96.5.6"),
                json!([{"name": "client", "port": 6379, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]),
            ),
            service("api", Some("eu-1=10.96.0.9"), json!([{"port": 80}])),
            service("pending", None, json!([{"port": 80}])),
            service("elsewhere", Some("us-1=10.0.0.2"), json!([{"port": 80}])),
        ];
        let env = service_env(&services, "eu-1");
        let pairs: Vec<(&str, &str)> = env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("API_SERVICE_HOST", "10.96.0.9"),
                ("API_SERVICE_PORT", "80"),
                ("API_PORT", "tcp://10.96.0.9:80"),
                ("API_PORT_80_TCP", "tcp://10.96.0.9:80"),
                ("API_PORT_80_TCP_PROTO", "tcp"),
                ("API_PORT_80_TCP_PORT", "80"),
                ("API_PORT_80_TCP_ADDR", "10.96.0.9"),
                ("REDIS_MAIN_SERVICE_HOST", "10.96.5.6"),
                ("REDIS_MAIN_SERVICE_PORT", "6379"),
                ("REDIS_MAIN_SERVICE_PORT_CLIENT", "6379"),
                ("REDIS_MAIN_PORT", "tcp://10.96.5.6:6379"),
                ("REDIS_MAIN_PORT_6379_TCP", "tcp://10.96.5.6:6379"),
                ("REDIS_MAIN_PORT_6379_TCP_PROTO", "tcp"),
                ("REDIS_MAIN_PORT_6379_TCP_PORT", "6379"),
                ("REDIS_MAIN_PORT_6379_TCP_ADDR", "10.96.5.6"),
                ("REDIS_MAIN_PORT_53_UDP", "udp://10.96.5.6:53"),
                ("REDIS_MAIN_PORT_53_UDP_PROTO", "udp"),
                ("REDIS_MAIN_PORT_53_UDP_PORT", "53"),
                ("REDIS_MAIN_PORT_53_UDP_ADDR", "10.96.5.6"),
            ]
        );
        let mut host = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "image": "x", "env": [{"name": "API_SERVICE_HOST", "value": "mine"}]}]}}));
        add_env(&mut host, &env);
        let vars = host.spec.expect("spec").containers[0]
            .env
            .clone()
            .expect("env");
        assert_eq!(vars.len(), env.len());
        let own: Vec<_> = vars
            .iter()
            .filter(|v| v.name == "API_SERVICE_HOST")
            .collect();
        assert_eq!(own.len(), 1);
        assert_eq!(
            own[0].value.as_deref(),
            Some("mine"),
            "the container's own wins"
        );
    }

    #[test]
    fn host_events_read_in_the_tenants_names() {
        let tenant = pod(
            json!({"metadata": {"name": "api", "namespace": "web", "uid": "u-3"},
            "spec": {"nodeName": "sim-0.eu-1"}}),
        );
        let event = |value: serde_json::Value| -> Event {
            serde_json::from_value(value).expect("an event")
        };
        let scheduled = scope().event_to_tenant(
            &event(json!({"metadata": {"name": "api.17a", "namespace": "vc-acme--web"},
                "involvedObject": {"kind": "Pod", "name": "api", "namespace": "vc-acme--web", "uid": "h-3"},
                "reason": "Scheduled", "type": "Normal", "count": 1,
                "message": "Successfully assigned vc-acme--web/api to sim-1",
                "source": {"component": "default-scheduler"}})),
            &tenant,
            "vc-acme--web",
        );
        assert_eq!(scheduled.metadata.name.as_deref(), Some("api.17a"));
        assert_eq!(scheduled.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(scheduled.involved_object.uid.as_deref(), Some("u-3"));
        assert_eq!(scheduled.involved_object.namespace.as_deref(), Some("web"));
        assert_eq!(
            scheduled.message.as_deref(),
            Some("Successfully assigned web/api to sim-1.eu-1")
        );
        let started = scope().event_to_tenant(
            &event(json!({"metadata": {"name": "api.17b", "namespace": "vc-acme--web"},
                "involvedObject": {"kind": "Pod", "name": "api", "fieldPath": "spec.containers{app}"},
                "reason": "Started", "count": 2, "message": "Started container app",
                "source": {"component": "kubelet", "host": "sim-0"},
                "reportingComponent": "kubelet", "reportingInstance": "sim-0"})),
            &tenant,
            "vc-acme--web",
        );
        let source = started.source.expect("a source");
        assert_eq!(source.host.as_deref(), Some("sim-0.eu-1"));
        assert_eq!(started.reporting_instance.as_deref(), Some("sim-0.eu-1"));
        assert_eq!(started.count, Some(2));
        assert_eq!(
            started.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
        assert_eq!(started.message.as_deref(), Some("Started container app"));
    }

    /// The volume the ServiceAccount admission plugin adds, and one a pod asks for itself:
    /// each token, the tenant's CA and namespace come from the token Secret; what else the
    /// volumes project stays as it is.
    #[test]
    fn projected_tokens_come_from_the_pods_token_secret() {
        let tenant = pod(json!({
            "metadata": {"name": "api", "namespace": "web", "uid": "u-2"},
            "spec": {
                "containers": [{"name": "app", "image": "nginx", "env": [
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                "volumes": [
                    {"name": "kube-api-access-q", "projected": {"defaultMode": 420, "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
                    {"name": "vault", "projected": {"sources": [
                        {"downwardAPI": {"items": [
                            {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                        {"configMap": {"name": "settings"}},
                        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 7200, "path": "vault-token"}}]}},
                    {"name": "plain", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}]
            }
        }));
        let host = scope().pod_to_host(&tenant);
        let spec = serde_json::to_value(host.spec.expect("spec")).expect("json");
        assert_eq!(
            spec["volumes"],
            json!([
                {"name": "kube-api-access-q", "projected": {"defaultMode": 420, "sources": [
                    {"secret": {"name": "api-sa-token", "items": [
                        {"key": "kube-api-access-q.token.0", "path": "token"},
                        {"key": "ca.crt", "path": "ca.crt"},
                        {"key": "namespace", "path": "namespace"}]}}]}},
                {"name": "vault", "projected": {"sources": [
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"configMap": {"name": "settings"}},
                    {"secret": {"name": "api-sa-token", "items": [
                        {"key": "namespace", "path": "ns"},
                        {"key": "vault.token.2", "path": "vault-token"}]}}]}},
                {"name": "plain", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}
            ]),
            "{spec:#}"
        );
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{"name": "NS", "value": "web"},
                   {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
            "the tenant's namespace, not the host's"
        );
        assert_eq!(
            Projections::of(&tenant),
            Projections {
                tokens: vec![
                    Projection {
                        key: "kube-api-access-q.token.0".into(),
                        audience: None,
                        expiration_seconds: 3607
                    },
                    Projection {
                        key: "vault.token.2".into(),
                        audience: Some("vault".into()),
                        expiration_seconds: 7200
                    },
                ],
                ca: true,
                namespace: true,
            }
        );
        let none = pod(json!({"metadata": {"name": "p", "namespace": "web"},
            "spec": {"containers": [], "volumes": [{"name": "plain", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}]}}));
        assert!(Projections::of(&none).is_empty(), "no token, no Secret");

        // The Secret: the syncer's, made from the pod (so never taken for a copy), owned
        // by the host pod, due again at 80% of the tokens' life.
        let issued: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let expires: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().expect("time");
        let due = token_refresh(issued, expires);
        assert_eq!(due.to_string(), "2026-01-01T00:48:00Z");
        let host =
            pod(json!({"metadata": {"name": "api", "namespace": "vc-acme--web", "uid": "h-2"}}));
        let secret = scope().token_secret_to_host(&tenant, &host, BTreeMap::new(), due);
        let meta = &secret.metadata;
        assert_eq!(meta.name.as_deref(), Some("api-sa-token"));
        assert_eq!(meta.namespace.as_deref(), Some("vc-acme--web"));
        assert!(scope().owns(meta));
        let made_from = origin(meta).expect("an origin");
        assert_eq!(
            (made_from.uid.as_str(), made_from.kind.as_deref()),
            ("u-2", Some("v1/Pod"))
        );
        let owners = meta.owner_references.as_ref().expect("owned");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Pod", "h-2")
        );
        assert_eq!(token_refresh_of(&secret), Some(due));
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn a_node_of_another_host_is_not_kept() {
        let tenant = pod(json!({
            "metadata": {"name": "p", "namespace": "web", "uid": "u"},
            "spec": {"nodeName": "sim-0.us-1", "containers": [{"name": "app", "image": "x"}]}
        }));
        let host = scope().pod_to_host(&tenant);
        assert!(host.spec.expect("spec").node_name.is_none());
        assert_eq!(scope().host_node("sim-0.eu-1"), Some("sim-0"));
        assert_eq!(scope().host_node("eu-1"), None);
        assert_eq!(scope().host_node("sim-0xeu-1"), None);
    }

    #[test]
    fn objects_without_every_marker_are_not_ours() {
        let mut meta = scope()
            .pod_to_host(&pod(json!({
                "metadata": {"name": "p", "namespace": "web", "uid": "u"},
                "spec": {"containers": []}
            })))
            .metadata;
        assert!(scope().owns(&meta));
        let other = Scope {
            tenant: "other".into(),
            ..scope()
        };
        assert!(!other.owns(&meta), "another tenant's");
        let platform = Scope {
            platform: "another".into(),
            ..scope()
        };
        assert!(!platform.owns(&meta), "another platform's");
        meta.annotations
            .as_mut()
            .expect("annotations")
            .remove(OBJECT_UID);
        assert!(!scope().owns(&meta), "without its origin");
    }

    #[test]
    fn the_host_policy_refuses_what_reaches_past_the_pod() {
        for (spec, refused) in [
            (json!({"containers": [{"name": "a"}]}), None),
            (
                json!({"hostNetwork": true, "containers": [{"name": "a"}]}),
                Some("hostNetwork"),
            ),
            (
                json!({"hostPID": true, "containers": [{"name": "a"}]}),
                Some("hostPID"),
            ),
            (
                json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}], "containers": [{"name": "a"}]}),
                Some("hostPath"),
            ),
            (
                json!({"initContainers": [{"name": "i", "securityContext": {"privileged": true}}], "containers": [{"name": "a"}]}),
                Some("privileged"),
            ),
        ] {
            let result = host_policy(&pod(json!({"metadata": {"name": "p"}, "spec": spec})));
            match refused {
                None => assert!(result.is_ok(), "{spec}: {result:?}"),
                Some(word) => {
                    let Refused(message) = result.expect_err("refused");
                    assert!(message.contains(word), "{spec}: {message}");
                }
            }
        }
    }

    #[test]
    fn status_comes_up_for_the_declared_containers_only() {
        let tenant = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"qosClass": "Burstable"}
        }));
        let host: PodStatus = serde_json::from_value(json!({
            "phase": "Running", "podIP": "10.0.0.5", "qosClass": "BestEffort",
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "image": "x", "imageID": ""},
                {"name": "injected-sidecar", "ready": true, "restartCount": 0, "image": "y", "imageID": ""}]
        }))
        .expect("a status");
        let status = status_up(&tenant, &host);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
        let names: Vec<_> = status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["app"]);
    }

    #[test]
    fn a_mirrored_node_is_named_by_its_host_and_keeps_topology_only() {
        let host: Node = serde_json::from_value(json!({
            "metadata": {"name": "sim-0", "labels": {
                "topology.kubernetes.io/zone": "z1", "kubernetes.io/arch": "amd64",
                "secret.example.com/rack": "r9"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("a node");
        let node = scope().node_to_tenant(&host);
        assert_eq!(node.metadata.name.as_deref(), Some("sim-0.eu-1"));
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels["topology.kubernetes.io/zone"], "z1");
        assert_eq!(labels[HOST_CLUSTER], "eu-1");
        assert_eq!(labels[HOST_NODE], "sim-0");
        assert_eq!(labels["kubernetes.io/hostname"], "sim-0.eu-1");
        assert!(!labels.contains_key("secret.example.com/rack"));
        assert!(node.spec.expect("spec").taints.is_none());
        let status = node.status.expect("status");
        assert_eq!(status.capacity.expect("capacity")["cpu"].0, "4");
        assert_eq!(scope().host_node("sim-0.eu-1"), Some("sim-0"));
    }

    #[test]
    fn a_pods_references_are_every_configmap_and_secret_it_names() {
        let spec: PodSpec = serde_json::from_value(json!({
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-volume"}},
                {"name": "b", "secret": {"secretName": "secret-volume"}},
                {"name": "c", "projected": {"sources": [
                    {"configMap": {"name": "cm-projected"}},
                    {"secret": {"name": "secret-projected"}}]}},
                {"name": "d", "emptyDir": {}}],
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
            "containers": [{"name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "secret-env", "key": "k"}}},
                    {"name": "C", "value": "plain"}],
                "envFrom": [{"secretRef": {"name": "secret-from"}}]}],
            "ephemeralContainers": [{"name": "debug",
                "envFrom": [{"configMapRef": {"name": "cm-debug"}}]}]
        }))
        .expect("a spec");
        let refs = References::of(&spec);
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            refs.config_maps,
            set(&["cm-debug", "cm-env", "cm-init", "cm-projected", "cm-volume"])
        );
        assert_eq!(
            refs.secrets,
            set(&[
                "pull",
                "secret-env",
                "secret-from",
                "secret-projected",
                "secret-volume"
            ])
        );
    }

    #[test]
    fn configmaps_and_secrets_go_down_marked_and_tokens_as_opaque() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "conf", "namespace": "web", "uid": "c-1"},
            "data": {"k": "v"}, "immutable": true
        }))
        .expect("a configmap");
        let host = scope().config_map_to_host(&cm);
        assert_eq!(host.metadata.namespace.as_deref(), Some("vc-acme--web"));
        assert!(scope().owns(&host.metadata));
        assert_eq!(host.data, cm.data);
        assert_eq!(host.immutable, Some(true));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "tok", "namespace": "web", "uid": "s-1",
                "annotations": {"kubernetes.io/service-account.name": "builder"}},
            "type": "kubernetes.io/service-account-token", "data": {"token": "eA=="}
        }))
        .expect("a secret");
        let host = scope().secret_to_host(&secret);
        assert_eq!(host.type_.as_deref(), Some("Opaque"));
        assert_eq!(host.data, secret.data);
        assert_eq!(
            host.metadata.annotations.as_ref().expect("annotations")[OBJECT_KIND],
            "v1/Secret"
        );
    }

    #[test]
    fn a_service_asks_for_the_tenants_addresses_then_keeps_the_hosts() {
        let tenant: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "web", "uid": "s-1",
                "annotations": {HOST_CLUSTER_IPS: "eu-1=10.96.0.9"}},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                "externalIPs": ["1.2.3.4"],
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}
        }))
        .expect("a service");
        let new = scope().service_to_host(&tenant, None);
        let spec = new.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.5"));
        assert_eq!(
            spec.ports.as_ref().expect("ports")[0].node_port,
            Some(30080)
        );
        assert!(spec.external_ips.is_none());
        assert_eq!(spec.selector.as_ref().expect("selector")["app"], "web");
        let annotations = new.metadata.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key("t.vcluster.io/host-cluster-ips"));
        assert!(scope().owns(&new.metadata));

        let second = without_addresses(&new).expect("a second try");
        let spec = second.spec.as_ref().expect("spec");
        assert!(spec.cluster_ip.is_none() && spec.cluster_ips.is_none());
        assert!(spec.ports.as_ref().expect("ports")[0].node_port.is_none());
        assert!(without_addresses(&second).is_none(), "nothing left to drop");

        let host: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.96.7.7", "clusterIPs": ["10.96.7.7"],
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}
        }))
        .expect("a service");
        let kept = scope().service_to_host(&tenant, Some(&host));
        let spec = kept.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.7.7"));
        assert_eq!(
            spec.ports.as_ref().expect("ports")[0].node_port,
            Some(31000)
        );
        assert_eq!(
            host_cluster_ips(&tenant, &host, "eu-1").as_deref(),
            Some("eu-1=10.96.7.7")
        );
        // Another host's entry is kept; this host's is replaced.
        let mut annotated = tenant.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([(
            HOST_CLUSTER_IPS.to_owned(),
            "us-1=10.96.1.1,eu-1=10.96.0.9".to_owned(),
        )]));
        assert_eq!(
            host_cluster_ips(&annotated, &host, "eu-1").as_deref(),
            Some("eu-1=10.96.7.7,us-1=10.96.1.1")
        );

        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "web"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
        }))
        .expect("a service");
        let copy = scope().service_to_host(&headless, None);
        assert!(without_addresses(&copy).is_none());
        assert_eq!(host_cluster_ips(&headless, &copy, "eu-1"), None);
    }

    #[test]
    fn the_syncers_events_are_named_by_what_they_say_about_which_object() {
        let now = Time(jiff::Timestamp::from_second(1_800_000_000).expect("a time"));
        let namespace = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some("web".into()),
            uid: Some("n-1".into()),
            ..ObjectReference::default()
        };
        let event = tenant_event(&namespace, "Warning", "UnknownHostCluster", "no mars", &now);
        // A cluster-scoped object's events are in `default`, as upstream's.
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        let name = event.metadata.name.clone().expect("a name");
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(event.involved_object, namespace);
        assert_eq!(event.count, Some(1));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        let again = tenant_event(&namespace, "Warning", "UnknownHostCluster", "no mars", &now);
        assert_eq!(
            again.metadata.name, event.metadata.name,
            "a repeat finds it"
        );
        let other = tenant_event(
            &namespace,
            "Warning",
            "UnknownHostCluster",
            "no venus",
            &now,
        );
        assert_ne!(other.metadata.name, event.metadata.name);
    }

    #[test]
    fn a_mirrored_node_of_an_unreachable_host_goes_unknown_and_tainted_then_back() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "sim-0.eu-1"},
            "spec": {"taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"}
            ]}
        }))
        .expect("a node");
        let now = Time(jiff::Timestamp::from_second(1_800_000_000).expect("a time"));
        let (conditions, taints) = unreachable_node(&node, &now).expect("it changes");
        assert!(conditions.iter().all(|c| c.status == "Unknown"
            && c.reason.as_deref() == Some("NodeStatusUnknown")
            && c.last_transition_time.as_ref() == Some(&now)));
        let keys: Vec<(&str, &str)> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("team", "NoSchedule"),
                (UNREACHABLE_TAINT, "NoSchedule"),
                (UNREACHABLE_TAINT, "NoExecute")
            ]
        );

        let mut gone = node.clone();
        gone.status.as_mut().expect("status").conditions = Some(conditions);
        gone.spec.as_mut().expect("spec").taints = Some(taints);
        assert!(
            unreachable_node(&gone, &now).is_none(),
            "nothing more to write"
        );
        let back = reachable_taints(&gone).expect("taints to drop");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, "team");
        assert!(reachable_taints(&node).is_none(), "no taint of ours");
    }

    #[test]
    fn a_host_namespace_carries_markers_not_the_tenants_labels() {
        let tenant: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "n-1", "labels": {
                "pod-security.kubernetes.io/enforce": "privileged"}}
        }))
        .expect("a namespace");
        let host = scope().namespace_to_host(&tenant);
        assert_eq!(host.metadata.name.as_deref(), Some("vc-acme--web"));
        let labels = host.metadata.labels.as_ref().expect("labels");
        assert!(!labels.contains_key("pod-security.kubernetes.io/enforce"));
        assert_eq!(labels[NAMESPACE], "web");
        assert!(scope().owns(&host.metadata));
        assert_eq!(
            origin(&host.metadata).map(|o| o.uid),
            Some("n-1".to_owned())
        );
    }
}
