//! Placement: which host cluster each tenant namespace, and then each of its pods, goes
//! to. One set per tenant, beside the per-host controllers, which act only on what is
//! placed on their host.
//!
//! - A namespace ([`namespaces`]) is pinned by the annotation `vcluster.io/host-cluster:
//!   NAME` (a name that is no host of this syncer gets a Warning event, and nothing of the
//!   namespace goes anywhere); `vcluster.io/placement: spread` spreads it over every host;
//!   otherwise it goes to the reachable host with the most free pod slots. The choice is
//!   recorded on the namespace (`vcluster.io/placed-on`) and kept, after a restart too,
//!   until that host is lost.
//! - A pod ([`pods`]) is placed once, before anything is made for it on a host: the
//!   annotation `vcluster.io/placed-on` on the tenant pod names its namespace's host (a
//!   spread namespace's pod: the reachable host with the fewest of the namespace's pods,
//!   the freest on a tie). It never
//!   changes, so a tenant pod has at most one host pod, ever (the design note's D6): a pod
//!   whose host is lost is marked for deletion (as upstream's taint-based eviction marks
//!   it) and stays Terminating until its host confirms the host pod is gone, or an admin
//!   deletes it with grace 0; its controller makes a replacement, which is placed anew.
//!   While its host is unreachable, a pod's `Ready` is `False`, so that Services leave it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodCondition};
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::hosts::Hosts;
use crate::translate::{HOST_CLUSTER, PLACED_ON, PLACEMENT, SPREAD};
use crate::{Error, chain, conflict, not_found, patch_params};

/// Where a tenant namespace's objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placed {
    /// To this host.
    On(String),
    /// To every host (pods: each to one of them).
    Spread,
    /// Nowhere: pinned to a host this syncer does not have, or no host is reachable.
    Nowhere,
}

/// The placement of one tenant's namespaces, as its namespace controller decided them.
pub(crate) struct Placement {
    pub(crate) hosts: Arc<Hosts>,
    namespaces: Mutex<HashMap<String, Placed>>,
    /// Bumped whenever a namespace's placement changes.
    changes: watch::Sender<u64>,
}

impl Placement {
    pub(crate) fn new(hosts: Arc<Hosts>) -> Arc<Self> {
        Arc::new(Self {
            hosts,
            namespaces: Mutex::default(),
            changes: watch::Sender::new(0),
        })
    }

    /// Where the objects of tenant namespace `namespace` go (none: not decided yet).
    pub(crate) fn of(&self, namespace: &str) -> Option<Placed> {
        self.namespaces
            .lock()
            .expect("placement")
            .get(namespace)
            .cloned()
    }

    /// Whether the objects of `namespace` (its Services, ConfigMaps, Secrets, quotas) go to
    /// `host` (none: not decided yet).
    pub(crate) fn wants(&self, namespace: &str, host: &str) -> Option<bool> {
        self.of(namespace).map(|placed| match placed {
            Placed::On(on) => on == host,
            Placed::Spread => true,
            Placed::Nowhere => false,
        })
    }

    fn set(&self, namespace: &str, placed: Option<Placed>) {
        let changed = {
            let mut namespaces = self.namespaces.lock().expect("placement");
            let before = match &placed {
                Some(placed) => namespaces.insert(namespace.to_owned(), placed.clone()),
                None => namespaces.remove(namespace),
            };
            before != placed
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// A stream with an item whenever a namespace's placement changes (for
    /// `Controller::reconcile_all_on`).
    pub(crate) fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        changes_of(self.changes.subscribe())
    }
}

/// A stream with an item at every change a watch receiver sees.
pub(crate) fn changes_of(
    receiver: watch::Receiver<u64>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

/// The host a tenant pod is placed on, if it is: its annotation.
pub(crate) fn placed_on(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PLACED_ON))
        .map(String::as_str)
}

/// What the placement controllers of one tenant share.
struct Tenant {
    name: String,
    client: Client,
    placement: Arc<Placement>,
    /// The pod controller's cache of the tenant's pods (set once it is made).
    pods: OnceLock<Store<Pod>>,
    /// Pods of spread namespaces placed, by uid, whose placement the cache may not show
    /// yet: their host.
    pending: Mutex<HashMap<String, String>>,
}

/// Both placement controllers of one tenant, until the end.
pub(crate) async fn run(name: String, client: Client, placement: Arc<Placement>) {
    let tenant = Arc::new(Tenant {
        name,
        client,
        placement,
        pods: OnceLock::new(),
        pending: Mutex::default(),
    });
    tokio::join!(namespaces(tenant.clone()), pods(tenant));
}

/// The namespace controller: decides and records each namespace's placement; looks at
/// every namespace again whenever a host's health changes.
async fn namespaces(tenant: Arc<Tenant>) {
    let api: Api<Namespace> = Api::all(tenant.client.clone());
    let results = Controller::new(api, watcher::Config::default())
        .reconcile_all_on(changes_of(tenant.placement.hosts.changes()))
        .run(place_namespace, retry, tenant);
    crate::drive(results, "namespace placement").await;
}

fn retry<K>(_object: Arc<K>, error: &Error, tenant: Arc<Tenant>) -> Action {
    tracing::warn!(tenant = %tenant.name, error = %chain(error), "syncer: a placement could not be decided; trying again");
    Action::requeue(Duration::from_secs(2))
}

/// What a namespace's annotations and the hosts' health decide for it (a placement by free
/// slots takes one), or why it cannot be placed.
fn decide(annotations: Option<&BTreeMap<String, String>>, hosts: &Hosts) -> Result<Placed, String> {
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    if let Some(pin) = annotation(HOST_CLUSTER) {
        return if hosts.known(pin) {
            Ok(Placed::On(pin.to_owned()))
        } else {
            Err(format!(
                "pinned to host cluster {pin:?}, which is none of this syncer's ({})",
                hosts.names()
            ))
        };
    }
    if annotation(PLACEMENT) == Some(SPREAD) {
        return Ok(Placed::Spread);
    }
    if let Some(placed) = annotation(PLACED_ON).filter(|h| hosts.known(h) && !hosts.lost(h)) {
        return Ok(Placed::On(placed.to_owned()));
    }
    let names = hosts.clusters().iter().map(|c| c.name.as_str());
    Ok(hosts.take_slot(names).map_or(Placed::Nowhere, Placed::On))
}

async fn place_namespace(namespace: Arc<Namespace>, tenant: Arc<Tenant>) -> Result<Action, Error> {
    let name = namespace.name_any();
    if namespace.metadata.deletion_timestamp.is_some() {
        tenant.placement.set(&name, None);
        return Ok(Action::await_change());
    }
    let annotations = namespace.metadata.annotations.as_ref();
    let placed = match decide(annotations, &tenant.placement.hosts) {
        Ok(placed) => placed,
        Err(why) => {
            if tenant.placement.of(&name) != Some(Placed::Nowhere) {
                tracing::info!(tenant = %tenant.name, namespace = %name, why, "syncer: a namespace cannot be placed");
                let message = format!("nothing of this namespace runs anywhere: {why}");
                let about = namespace.object_ref(&());
                crate::events::record(
                    &tenant.client,
                    &about,
                    "Warning",
                    "UnknownHostCluster",
                    &message,
                )
                .await;
            }
            tenant.placement.set(&name, Some(Placed::Nowhere));
            return Ok(Action::await_change());
        }
    };
    if let Placed::On(host) = &placed {
        let recorded = annotations.and_then(|a| a.get(PLACED_ON));
        if recorded != Some(host) {
            tracing::info!(tenant = %tenant.name, namespace = %name, host, "syncer: a namespace is placed");
            let api: Api<Namespace> = Api::all(tenant.client.clone());
            let patch = json!({"metadata": {"annotations": {PLACED_ON: host}}});
            api.patch(&name, &patch_params(), &Patch::Merge(patch))
                .await
                .map_err(Error::Tenant)?;
        }
    }
    let retry_later = placed == Placed::Nowhere;
    tenant.placement.set(&name, Some(placed));
    Ok(if retry_later {
        // No host reachable: looked at again when one is (a health change), or soon.
        Action::requeue(Duration::from_secs(10))
    } else {
        Action::await_change()
    })
}

/// The pod controller: places each new pod, and acts for the pods of unreachable and lost
/// hosts; looks at every pod again whenever a placement or a host's health changes.
async fn pods(tenant: Arc<Tenant>) {
    let api: Api<Pod> = Api::all(tenant.client.clone());
    let triggers = futures::stream::select(
        tenant.placement.changes(),
        changes_of(tenant.placement.hosts.changes()),
    );
    let controller = Controller::new(api, watcher::Config::default());
    let _ = tenant.pods.set(controller.store());
    let results = controller
        .reconcile_all_on(triggers.boxed())
        .run(place_pod, retry, tenant);
    crate::drive(results, "pod placement").await;
}

/// The host a new pod of spread namespace `namespace` goes to: the reachable host with the
/// fewest of the namespace's live pods (as upstream's topology spread evens pods out over
/// zones), the freest of those on a tie; one of its slots taken.
fn spread_to(tenant: &Tenant, namespace: &str) -> Option<String> {
    let hosts = &tenant.placement.hosts;
    let mut counts: BTreeMap<&str, usize> = hosts
        .clusters()
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| hosts.reachable(name))
        .map(|name| (name, 0))
        .collect();
    let mut pending = tenant.pending.lock().expect("pending");
    let mut unplaced = HashSet::new();
    for pod in tenant.pods.get().map(Store::state).unwrap_or_default() {
        let uid = pod.uid().unwrap_or_default();
        let on = host_of(&pod, hosts);
        if on.is_none() {
            unplaced.insert(uid.clone());
        }
        if pod.namespace().as_deref() != Some(namespace)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let on = on.or_else(|| pending.get(&uid).cloned());
        if let Some(count) = on.and_then(|h| counts.get_mut(h.as_str())) {
            *count += 1;
        }
    }
    // What the cache shows placed (or gone) is no longer pending.
    pending.retain(|uid, _| unplaced.contains(uid));
    let fewest = *counts.values().min()?;
    hosts.take_slot(
        counts
            .iter()
            .filter(|(_, n)| **n == fewest)
            .map(|(name, _)| *name),
    )
}

/// The host a tenant pod is on: the host of the mirrored node it is bound to, or the one it
/// is placed on. A pod bound to a node of its own (`--tenant-simulated-nodes`) is on none.
pub(crate) fn host_of(pod: &Pod, hosts: &Hosts) -> Option<String> {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(node) => hosts
            .clusters()
            .iter()
            .find(|c| {
                node.strip_suffix(c.name.as_str())
                    .is_some_and(|n| n.ends_with('.'))
            })
            .map(|c| c.name.clone()),
        None => placed_on(pod).map(str::to_owned),
    }
}

async fn place_pod(pod: Arc<Pod>, tenant: Arc<Tenant>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else {
        return Ok(Action::await_change());
    };
    let hosts = &tenant.placement.hosts;
    let pods: Api<Pod> = Api::namespaced(tenant.client.clone(), &namespace);
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some();
    let Some(host) = host_of(&pod, hosts) else {
        if bound || pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let host = match tenant.placement.of(&namespace) {
            Some(Placed::On(host)) => Some(host),
            Some(Placed::Spread) => {
                let host = spread_to(&tenant, &namespace);
                if let Some(host) = &host {
                    let mut pending = tenant.pending.lock().expect("pending");
                    pending.insert(uid.clone(), host.clone());
                }
                host
            }
            Some(Placed::Nowhere) | None => None,
        };
        let Some(host) = host else {
            return Ok(Action::await_change());
        };
        let patch = json!({"metadata": {"annotations": {PLACED_ON: host}}});
        match pods
            .patch(&pod.name_any(), &patch_params(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(Error::Tenant(e)),
        }
        return Ok(Action::await_change());
    };
    if pod.metadata.deletion_timestamp.is_none() && hosts.lost(&host) {
        tracing::info!(tenant = %tenant.name, pod = %format!("{namespace}/{}", pod.name_any()), host, "syncer: the pod's host cluster is lost; marking it for deletion");
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(e) if not_found(&e) || conflict(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Tenant(e)),
        }
        let message = format!("Marking for deletion: host cluster {host} is unreachable");
        let about = pod.object_ref(&());
        crate::events::record(
            &tenant.client,
            &about,
            "Normal",
            "TaintManagerEviction",
            &message,
        )
        .await;
        return Ok(Action::await_change());
    }
    if !hosts.reachable(&host) && ready(&pod) {
        // As upstream's node lifecycle controller marks the pods of a node it lost touch
        // with: not Ready, so that Services leave them, until the host answers again (its
        // pod reconciles then write the host's status back).
        let condition = PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("NodeUnreachable".into()),
            message: Some(format!("host cluster {host} is unreachable")),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now(),
            )),
            ..PodCondition::default()
        };
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "Ready")
            .collect();
        conditions.push(condition);
        let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
        match pods
            .patch_status(&pod.name_any(), &patch_params(), &patch)
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(Error::Tenant(e)),
        }
    }
    Ok(Action::await_change())
}

/// Whether a pod's `Ready` condition is `True`.
fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn hosts(names: &[&str]) -> Arc<Hosts> {
        // Clients are never used by `decide`; a client of a local address is enough.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let clusters = names
            .iter()
            .map(|name| crate::Cluster {
                name: (*name).to_owned(),
                client: Client::try_from(config.clone()).expect("client"),
            })
            .collect();
        Hosts::new(clusters, Duration::from_secs(60))
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_namespace_is_placed_by_its_pin_its_record_or_the_freest_host() {
        let hosts = hosts(&["eu-1", "us-1"]);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<Placed, ()>);
        let cases: &[Case<'_>] = &[
            (
                "a pin to a known host",
                &[(HOST_CLUSTER, "us-1")],
                Ok(Placed::On("us-1".into())),
            ),
            (
                "a pin wins over a record",
                &[(HOST_CLUSTER, "us-1"), (PLACED_ON, "eu-1")],
                Ok(Placed::On("us-1".into())),
            ),
            (
                "a pin to an unknown host",
                &[(HOST_CLUSTER, "mars")],
                Err(()),
            ),
            ("spread", &[(PLACEMENT, SPREAD)], Ok(Placed::Spread)),
            (
                "a record is kept",
                &[(PLACED_ON, "us-1")],
                Ok(Placed::On("us-1".into())),
            ),
            (
                "a record of an unknown host is placed anew (first host on a tie)",
                &[(PLACED_ON, "gone")],
                Ok(Placed::On("eu-1".into())),
            ),
        ];
        for (name, pairs, want) in cases {
            let got = decide(Some(&annotations(pairs)), &hosts).map_err(|_| ());
            assert_eq!(&got, want, "{name}");
        }
    }

    #[tokio::test]
    async fn unpinned_namespaces_take_turns_on_hosts_with_equal_room() {
        let hosts = hosts(&["eu-1", "us-1"]);
        let first = decide(None, &hosts).expect("placed");
        let second = decide(None, &hosts).expect("placed");
        assert_eq!(first, Placed::On("eu-1".into()));
        assert_eq!(second, Placed::On("us-1".into()));
    }
}
