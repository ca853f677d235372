//! The host clusters a syncer sends workloads to, and their health, shared by every tenant
//! it serves: one probe per host, whatever the number of tenants.
//!
//! [`Hosts::probe`] asks each host for its version every [`PROBE`]. A host that failed
//! [`FAILURES`] probes in a row is *unreachable* from its first failure on: the tenant
//! Nodes mirrored from it go `Ready=Unknown` with upstream's `unreachable` taints, and its
//! pods' `Ready` goes `False` (`placement`). One still unreachable `failover_after` later
//! is *lost*: its pods are marked for deletion and the namespaces placed on it are placed
//! again. A lost host that answers again is reachable again; what it still runs of pods
//! that went elsewhere is deleted there (`pods::collect`).
//!
//! Free pod slots, for placement, are counted every [`FREE_EVERY`]: each Ready node's
//! allocatable pods less the pods bound to it that have not finished. A placement takes
//! one slot at once, so that pods placed between two counts spread too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use crate::{Cluster, chain};

/// How often each host is probed.
const PROBE: Duration = Duration::from_secs(2);
/// How long a probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Failed probes in a row that make a host unreachable (one lost answer is not a failure).
const FAILURES: u32 = 2;
/// How often free pod slots are counted again.
const FREE_EVERY: Duration = Duration::from_secs(10);

/// What the probes know of one host.
#[derive(Debug, Default)]
struct Health {
    /// Failed probes in a row.
    failures: u32,
    /// When the failures began (none: the last probe answered).
    failing_since: Option<Instant>,
    /// Unreachable for `failover_after`, and not answered since.
    lost: bool,
    /// Free pod slots, as last counted and taken since.
    free: i64,
}

/// The host clusters, their health and free capacity.
pub struct Hosts {
    clusters: Vec<Cluster>,
    failover_after: Duration,
    health: Mutex<HashMap<String, Health>>,
    /// Bumped whenever a host becomes unreachable, lost or reachable again.
    changes: watch::Sender<u64>,
}

impl Hosts {
    /// The hosts `clusters` (names unique), lost after `failover_after` unreachable. All are
    /// taken as reachable until probed.
    pub fn new(clusters: Vec<Cluster>, failover_after: Duration) -> Arc<Self> {
        let health = clusters
            .iter()
            .map(|c| (c.name.clone(), Health::default()))
            .collect();
        Arc::new(Self {
            clusters,
            failover_after,
            health: Mutex::new(health),
            changes: watch::Sender::new(0),
        })
    }

    /// The hosts, in the order given.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Whether `name` is one of the hosts.
    pub(crate) fn known(&self, name: &str) -> bool {
        self.clusters.iter().any(|c| c.name == name)
    }

    /// The names of the hosts, for messages.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        names.join(", ")
    }

    /// Whether host `name` answers (an unknown name does not).
    pub fn reachable(&self, name: &str) -> bool {
        let health = self.health.lock().expect("health");
        health.get(name).is_some_and(|h| h.failures < FAILURES)
    }

    /// Whether host `name` has been unreachable for `failover_after`, and not answered
    /// since (an unknown name is not lost: it was never there).
    pub fn lost(&self, name: &str) -> bool {
        let health = self.health.lock().expect("health");
        health.get(name).is_some_and(|h| h.lost)
    }

    /// A receiver told of every change of a host's health.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The reachable host among `among` with the most free pod slots (the first given on a
    /// tie), one of its slots taken; none if none of them is reachable.
    pub(crate) fn take_slot<'a>(&self, among: impl IntoIterator<Item = &'a str>) -> Option<String> {
        let mut health = self.health.lock().expect("health");
        let mut best: Option<(&str, i64)> = None;
        for name in among {
            let Some(h) = health.get(name).filter(|h| h.failures < FAILURES) else {
                continue;
            };
            if best.is_none_or(|(_, free)| h.free > free) {
                best = Some((name, h.free));
            }
        }
        let name = best?.0.to_owned();
        if let Some(h) = health.get_mut(&name) {
            h.free -= 1;
        }
        Some(name)
    }

    /// Probes every host until the end, counting free slots every [`FREE_EVERY`].
    pub async fn probe(self: Arc<Self>) {
        let mut last_count: Option<Instant> = None;
        loop {
            let count = last_count.is_none_or(|at| at.elapsed() >= FREE_EVERY);
            let probes = self.clusters.iter().map(|cluster| async move {
                let answered = tokio::time::timeout(PROBE_TIMEOUT, cluster.client.apiserver_version())
                    .await
                    .is_ok_and(|r| r.is_ok());
                let free = if answered && count {
                    match free_slots(cluster).await {
                        Ok(free) => Some(free),
                        Err(e) => {
                            tracing::debug!(host = %cluster.name, error = %chain(&e), "syncer: cannot count the host's free pod slots");
                            None
                        }
                    }
                } else {
                    None
                };
                (cluster.name.as_str(), answered, free)
            });
            let results = futures::future::join_all(probes).await;
            if count {
                last_count = Some(Instant::now());
            }
            let changed = {
                let mut health = self.health.lock().expect("health");
                let mut changed = false;
                for (name, answered, free) in results {
                    let h = health.entry(name.to_owned()).or_default();
                    if let Some(free) = free {
                        h.free = free;
                    }
                    changed |= self.record(name, h, answered);
                }
                changed
            };
            if changed {
                self.changes.send_modify(|n| *n += 1);
            }
            tokio::time::sleep(PROBE).await;
        }
    }

    /// Records one probe's answer; whether the host's health changed.
    fn record(&self, name: &str, h: &mut Health, answered: bool) -> bool {
        if answered {
            let was_unreachable = h.failures >= FAILURES;
            if was_unreachable {
                tracing::info!(host = %name, "syncer: the host cluster answers again");
            }
            *h = Health {
                free: h.free,
                ..Health::default()
            };
            return was_unreachable;
        }
        h.failures += 1;
        let since = *h.failing_since.get_or_insert_with(Instant::now);
        if h.failures == FAILURES {
            tracing::warn!(host = %name, "syncer: the host cluster is unreachable");
            return true;
        }
        if h.failures > FAILURES && !h.lost && since.elapsed() >= self.failover_after {
            tracing::warn!(host = %name, after = ?self.failover_after, "syncer: the host cluster is lost; its pods are replaced elsewhere");
            h.lost = true;
            return true;
        }
        false
    }
}

/// The free pod slots of a host: each Ready, schedulable node's allocatable pods less the
/// pods bound to it that have not finished.
async fn free_slots(cluster: &Cluster) -> Result<i64, kube::Error> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let pods: Api<Pod> = Api::all(cluster.client.clone());
    let mut free: HashMap<String, i64> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|node| {
            let schedulable = node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true);
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            schedulable && ready
        })
        .map(|node| {
            let pods = node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get("pods"))
                .and_then(|q| q.0.parse::<i64>().ok())
                .unwrap_or(0);
            (node.metadata.name.unwrap_or_default(), pods)
        })
        .collect();
    // Every pod of the host, as the scheduler counts them (a host with many pods makes
    // this list long; a watch-fed count is the next step when that matters).
    for pod in pods.list(&ListParams::default()).await?.items {
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let node = pod.spec.and_then(|s| s.node_name);
        if let (false, Some(slots)) = (finished, node.and_then(|n| free.get_mut(&n))) {
            *slots -= 1;
        }
    }
    Ok(free.values().sum())
}
