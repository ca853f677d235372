//! The node simulator: what kwok does upstream. It registers simulated nodes in any
//! Kubernetes API (capacity, conditions, heartbeats through leases in `kube-node-lease`),
//! schedules unbound pods onto them when no scheduler does (nodeSelector, taints and
//! tolerations, resource requests), and plays their kubelet: a bound pod becomes Running
//! and Ready (pod IP, container statuses; probes count as passing), and a Job's pod
//! Succeeded. It speaks only the public API (kube-rs), so it runs unchanged against a
//! tenant of ours or a real cluster.
//!
//! It records the events of the components it plays as they do (`events.rs`): the
//! scheduler's `Scheduled` and `FailedScheduling`, the kubelet's image, container and node
//! events (`kubelet.rs`) and the node controller's `RegisteredNode`. Restarts are not
//! simulated, so neither is the kubelet's `BackOff`.
//!
//! Pods can ask for other behaviour through annotations:
//! - `nodesim.vcluster.io/ready: "false"`: running but never ready (a failing probe);
//! - `nodesim.vcluster.io/exit-code: "<n>"`: a Job's pod exits with `n` (non-zero: Failed);
//! - `nodesim.vcluster.io/stop-seconds: "<n>"`: its containers take `n` seconds to stop
//!   when it is deleted (at most its grace period), so it stays `Terminating` that long.
//!
//! A pod deleted gracefully is finished as its kubelet finishes it: once its containers
//! have stopped, it is deleted with no grace left (its uid as precondition).

mod events;
mod kubelet;
mod quantity;
mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use events::{Occurrence, Recorder, Source, Type};
pub use schedule::Capacity;

/// The field manager of the simulator's writes.
const MANAGER: &str = "vcluster-nodesim";
const READY_ANNOTATION: &str = "nodesim.vcluster.io/ready";
const EXIT_ANNOTATION: &str = "nodesim.vcluster.io/exit-code";
const STOP_ANNOTATION: &str = "nodesim.vcluster.io/stop-seconds";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many nodes.
    pub nodes: usize,
    /// Nodes are named `<prefix>-<i>`.
    pub prefix: String,
    /// What each node offers.
    pub capacity: Capacity,
    /// How often leases are renewed (node conditions: every fourth time).
    pub heartbeat: Duration,
    /// How long a Job's pod runs before it exits.
    pub job_runtime: Duration,
    /// Whether to bind unbound pods (off when a real scheduler runs).
    pub schedule: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 1,
            prefix: "sim".into(),
            capacity: Capacity::default(),
            heartbeat: Duration::from_secs(10),
            job_runtime: Duration::from_secs(1),
            schedule: true,
        }
    }
}

/// How often a kubelet tries to finish a deleted pod, a second apart.
const FINISH_TRIES: usize = 30;
/// How many API calls for pods run at once.
const CONCURRENCY: usize = 32;
/// How often unschedulable pods are tried again even if nothing changed: upstream's
/// scheduler moves a pod back to its active queue after five minutes at most.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(300);

/// Registers the nodes and runs until the pod watch fails for good (it retries with
/// backoff on its own) or the task is dropped.
pub async fn run(client: Client, options: Options) -> Result<(), kube::Error> {
    let names: Vec<String> = (0..options.nodes)
        .map(|i| format!("{}-{i}", options.prefix))
        .collect();
    let recorder = Recorder::start(&client);
    for (i, name) in names.iter().enumerate() {
        register(&client, &recorder, name, i, &options.capacity).await?;
    }
    tokio::spawn(heartbeats(client.clone(), names.clone(), options.heartbeat));
    let sim = Arc::new(Simulator {
        client: client.clone(),
        options,
        nodes: Mutex::new(schedule::Nodes::new(&names)),
        permits: tokio::sync::Semaphore::new(CONCURRENCY),
        recorder,
        pods: Mutex::new(Pods::default()),
        answered: tokio::sync::Notify::new(),
        images: Mutex::new(kubelet::Images::default()),
    });
    // Like upstream's scheduler, which waits for its informers, no pod is placed before
    // the nodes' capacity is known: it would be found unschedulable for nothing.
    if sim.follow_nodes().await.is_err() {
        tracing::debug!("node simulator: the node watch ended before it listed the nodes");
    }
    tokio::spawn(sim.clone().retry_unschedulable());
    let pods: Api<Pod> = Api::all(client);
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => sim.clone().saw(pod),
            Ok(watcher::Event::Delete(pod)) => sim.gone(&pod),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => {
                tracing::debug!(error = %e, "node simulator: pod watch interrupted");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

/// The node's address: `10.0.<i/250>.<i%250+1>`.
fn node_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 1)
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn node_conditions(at: &str) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": at, "lastTransitionTime": at})
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Registers node `name` (or takes it over, as a restarted kubelet does) and records what
/// its kubelet and the node controller say of it.
async fn register(
    client: &Client,
    recorder: &Recorder,
    name: &str,
    index: usize,
    capacity: &Capacity,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let before = nodes.get_opt(name).await?;
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "simulated",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": format!("10.244.{index}.0/24"), "podCIDRs": [format!("10.244.{index}.0/24")]},
    });
    let apply = PatchParams::apply(MANAGER).force();
    nodes.patch(name, &apply, &Patch::Apply(&node)).await?;
    let resources = capacity.as_resources();
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": node_conditions(&now()),
        "addresses": [
            {"type": "InternalIP", "address": node_ip(index)},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "osImage": "vcluster simulated node",
            "kernelVersion": "simulated", "kubeletVersion": "v1.34.0-sim", "kubeProxyVersion": "",
            "containerRuntimeVersion": "simulated://1.0", "machineID": name, "systemUUID": name,
            "bootID": name,
        },
        "phase": "Running",
    }});
    let node = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    });
    leases.patch(name, &apply, &Patch::Apply(&lease)).await?;
    recorder.record_all(kubelet::node_started(name, before.as_ref()));
    // The node controller, played here too, starts with the simulator and so meets every
    // node afresh, as kube-controller-manager does after a restart.
    recorder.record(Occurrence {
        source: Source::node_controller(),
        object: events::node_reference(&node),
        kind: Type::Normal,
        reason: "RegisteredNode",
        message: format!("Node {name} event: Registered Node {name} in Controller"),
        action: None,
    });
    Ok(())
}

/// A lease's time: RFC 3339 with microseconds.
fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Renews every node's lease each `every`, and its conditions every fourth time.
async fn heartbeats(client: Client, names: Vec<String>, every: Duration) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(every).await;
        tick += 1;
        for name in &names {
            let renew = json!({"spec": {"renewTime": micro_now()}});
            if let Err(e) = leases
                .patch(name, &PatchParams::default(), &Patch::Merge(&renew))
                .await
            {
                tracing::warn!(node = %name, error = %e, "node simulator: lease renewal failed");
            }
            if tick.is_multiple_of(4) {
                let status = json!({"status": {"conditions": node_conditions(&now())}});
                if let Err(e) = nodes
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "node simulator: node status failed");
                }
            }
        }
    }
}

struct Simulator {
    client: Client,
    options: Options,
    nodes: Mutex<schedule::Nodes>,
    permits: tokio::sync::Semaphore,
    recorder: Recorder,
    pods: Mutex<Pods>,
    /// Told whenever a binding of ours is answered (see `Pods::binding`).
    answered: tokio::sync::Notify,
    images: Mutex<kubelet::Images>,
}

/// What the scheduler and the kubelets remember of pods, by uid, until the pod is gone.
#[derive(Default)]
struct Pods {
    /// The pods no node fits, as last tried, with their `schedule::fingerprint`.
    unschedulable: HashMap<String, (u64, Pod)>,
    /// The pods this scheduler is binding. Their kubelet waits for the answer before it
    /// says anything, so that `Scheduled` comes first, as it does upstream (the watch can
    /// deliver the bound pod before the binding is answered).
    binding: HashSet<String>,
    /// The pods a kubelet has started (or is starting): started once, however often seen.
    started: HashSet<String>,
    /// The pods being deleted whose containers a kubelet has stopped.
    stopped: HashSet<String>,
}

fn uid(pod: &Pod) -> String {
    pod.uid().unwrap_or_default()
}

impl Simulator {
    /// Keeps the scheduler's view of the nodes' labels, taints and schedulability, and
    /// tries the unschedulable pods again when that changes. Answers once the nodes have
    /// been listed.
    fn follow_nodes(self: &Arc<Self>) -> tokio::sync::oneshot::Receiver<()> {
        let (listed, answer) = tokio::sync::oneshot::channel();
        let sim = self.clone();
        tokio::spawn(async move {
            let mut listed = Some(listed);
            let nodes: Api<Node> = Api::all(sim.client.clone());
            let mut events = watcher(nodes, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                        let changed = sim.nodes.lock().expect("nodes").update(&node);
                        if changed {
                            sim.retry();
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(listed) = listed.take() {
                            let _ = listed.send(());
                        }
                    }
                    Ok(watcher::Event::Init | watcher::Event::Delete(_)) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "node simulator: node watch interrupted");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        answer
    }

    /// Acts on a pod as it now is.
    fn saw(self: Arc<Self>, pod: Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            if self.pods.lock().expect("pods").stopped.insert(uid(&pod)) {
                self.stop(&pod);
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
                if grace > 0 && self.runs_here(&pod) {
                    tokio::spawn(async move { self.finish(pod, grace).await });
                }
            }
            return;
        }
        let spec = pod.spec.as_ref();
        let node_name = spec.and_then(|s| s.node_name.clone());
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match node_name {
            None if self.options.schedule && phase != "Succeeded" && phase != "Failed" => {
                let scheduler = spec.and_then(|s| s.scheduler_name.as_deref());
                if scheduler.is_some_and(|s| s != "default-scheduler") {
                    return;
                }
                let fingerprint = schedule::fingerprint(&pod);
                let pods = self.pods.lock().expect("pods");
                if pods
                    .unschedulable
                    .get(&uid(&pod))
                    .is_some_and(|(f, _)| *f == fingerprint)
                {
                    return; // only its status changed, most likely by this scheduler
                }
                drop(pods);
                self.attempt(pod, fingerprint);
            }
            Some(node) => {
                let index = self.nodes.lock().expect("nodes").bound(&pod, &node);
                let Some(index) = index else {
                    return; // not one of ours
                };
                let started = pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
                if !started
                    && phase != "Succeeded"
                    && phase != "Failed"
                    && self.pods.lock().expect("pods").started.insert(uid(&pod))
                {
                    tokio::spawn(async move { self.start(pod, index).await });
                }
            }
            None => {}
        }
    }

    /// One scheduling attempt: the pod is placed and bound, or remembered as unschedulable
    /// until it or the nodes change.
    fn attempt(self: Arc<Self>, pod: Pod, fingerprint: u64) {
        let choice = self.nodes.lock().expect("nodes").place(&pod);
        let mut pods = self.pods.lock().expect("pods");
        if choice.is_ok() {
            pods.unschedulable.remove(&uid(&pod));
            pods.binding.insert(uid(&pod));
        } else {
            pods.unschedulable
                .insert(uid(&pod), (fingerprint, pod.clone()));
        }
        drop(pods);
        tokio::spawn(async move { self.bind(pod, choice).await });
    }

    /// Tries every unschedulable pod again, as upstream's scheduling queue does when a node
    /// changes or a pod leaves one.
    fn retry(self: &Arc<Self>) {
        let pods = self.pods.lock().expect("pods");
        let waiting: Vec<(u64, Pod)> = pods.unschedulable.values().cloned().collect();
        drop(pods);
        for (fingerprint, pod) in waiting {
            self.clone().attempt(pod, fingerprint);
        }
    }

    /// Tries the unschedulable pods again every `UNSCHEDULABLE_RETRY`, whatever changed.
    async fn retry_unschedulable(self: Arc<Self>) {
        let mut every = tokio::time::interval(UNSCHEDULABLE_RETRY);
        every.tick().await;
        loop {
            every.tick().await;
            self.retry();
        }
    }

    /// A pod deleted: its kubelet stops it if it ran and was not stopped yet, and the room
    /// it leaves may fit a pod that did not fit before.
    fn gone(self: &Arc<Self>, pod: &Pod) {
        let mut pods = self.pods.lock().expect("pods");
        let uid = uid(pod);
        pods.unschedulable.remove(&uid);
        pods.started.remove(&uid);
        let stopped = pods.stopped.remove(&uid);
        drop(pods);
        if !stopped {
            self.stop(pod);
        }
        if self.nodes.lock().expect("nodes").release(pod) {
            self.retry();
        }
    }

    /// Whether the pod is bound to one of our nodes.
    fn runs_here(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|node| self.nodes.lock().expect("nodes").is_ours(node))
    }

    /// The kubelet stops a pod's containers, if it runs on one of our nodes.
    fn stop(&self, pod: &Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let running = pod
            .status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Running"));
        if running && self.runs_here(pod) {
            self.recorder
                .record_all(kubelet::containers_stopped(pod, node));
        }
    }

    /// The kubelet's last word on a pod deleted with `grace` seconds: once its containers
    /// have stopped (at once, or after the seconds it asks for, within its grace), the pod
    /// is deleted with no grace left, if it is still the same pod. A grace shortened
    /// meanwhile is not looked at again.
    async fn finish(&self, pod: Pod, grace: i64) {
        let stopping = pod
            .annotations()
            .get(STOP_ANNOTATION)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            .min(grace.unsigned_abs());
        tokio::time::sleep(Duration::from_secs(stopping)).await;
        let _permit = self.permits.acquire().await.expect("never closed");
        let name = pod.name_any();
        let namespace = pod.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        for _ in 0..FINISH_TRIES {
            match pods.delete(&name, &params).await {
                // Gone already, or another pod of that name now: nothing of ours to finish.
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::debug!(pod = %name, %namespace, error = %e, "node simulator: a deleted pod could not be finished; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::warn!(pod = %name, %namespace, "node simulator: a deleted pod could not be finished");
    }

    async fn bind(&self, pod: Pod, choice: Result<String, String>) {
        let _permit = self.permits.acquire().await.expect("never closed");
        let namespace = pod.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod.name_any();
        let scheduler = |kind, reason, message, action| Occurrence {
            source: Source::scheduler(),
            object: events::pod_reference(&pod, None),
            kind,
            reason,
            message,
            action: Some(action),
        };
        let result = match choice {
            Ok(node) => {
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                let bound = pods
                    .create_subresource::<Value, Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await;
                if bound.is_ok() {
                    let message = format!("Successfully assigned {namespace}/{name} to {node}");
                    self.recorder
                        .record(scheduler(Type::Normal, "Scheduled", message, "Binding"));
                }
                self.pods.lock().expect("pods").binding.remove(&uid(&pod));
                self.answered.notify_waiters();
                bound.map(drop)
            }
            Err(why) => {
                self.recorder.record(scheduler(
                    Type::Warning,
                    "FailedScheduling",
                    why.clone(),
                    "Scheduling",
                ));
                if unschedulable_already(&pod, &why) {
                    Ok(())
                } else {
                    let status = json!({"status": {"phase": "Pending", "conditions": [{
                        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": why, "lastTransitionTime": now(),
                    }]}});
                    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                        .map(drop)
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(pod = %name, %namespace, error = %e, "node simulator: scheduling failed");
        }
    }

    /// Plays the kubelet: the pod runs (and, if a Job's, exits after a while).
    async fn start(&self, pod: Pod, node: usize) {
        let name = pod.name_any();
        let namespace = pod.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let annotations = pod.annotations();
        let ready = annotations
            .get(READY_ANNOTATION)
            .is_none_or(|r| r != "false");
        let job = pod
            .owner_references()
            .iter()
            .any(|r| r.kind == "Job" && r.controller == Some(true));
        let ip = self.nodes.lock().expect("nodes").pod_ip(node);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        loop {
            // The waiter is made before the check, so that an answer in between is not
            // missed.
            let answered = self.answered.notified();
            if !self.pods.lock().expect("pods").binding.contains(&uid(&pod)) {
                break;
            }
            answered.await;
        }
        let started = {
            let mut images = self.images.lock().expect("images");
            kubelet::containers_started(&pod, node, &node_name, &mut images)
        };
        self.recorder.record_all(started);
        let status = {
            let _permit = self.permits.acquire().await.expect("never closed");
            let status = running(&pod, node, &ip, ready);
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
        };
        if let Err(e) = status {
            tracing::debug!(pod = %name, %namespace, error = %e, "node simulator: pod status failed");
            // Started again when next seen, if it is still there.
            self.pods.lock().expect("pods").started.remove(&uid(&pod));
            return;
        }
        if job {
            tokio::time::sleep(self.options.job_runtime).await;
            let code: i64 = annotations
                .get(EXIT_ANNOTATION)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let _permit = self.permits.acquire().await.expect("never closed");
            let status = exited(&pod, code);
            if let Err(e) = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::debug!(pod = %name, %namespace, error = %e, "node simulator: pod exit failed");
            }
        }
    }
}

/// Whether the pod already says why no node fits it, in these words: the condition is
/// written only when it changes, as upstream's scheduler writes it.
fn unschedulable_already(pod: &Pod, why: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(why)
        })
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// A container id for a container of a pod: stable and unique enough.
fn container_id(pod: &Pod, container: &str) -> String {
    let uid = pod.uid().unwrap_or_default().replace('-', "");
    format!("containerd://{uid}{}", container.len())
}

fn conditions(at: &str, ready: bool) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!([
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": at},
        {"type": "Initialized", "status": "True", "lastTransitionTime": at},
        {"type": "Ready", "status": ready, "lastTransitionTime": at},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": at},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
    ])
}

/// The status of a pod that started on node `node` with address `ip`.
fn running(pod: &Pod, node: usize, ip: &str, ready: bool) -> Value {
    let at = now();
    let containers: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": format!("{image}@sha256:simulated"),
                "containerID": container_id(pod, &name), "ready": ready, "started": true,
                "restartCount": 0, "state": {"running": {"startedAt": at}},
            })
        })
        .collect();
    json!({"status": {
        "phase": "Running",
        "hostIP": node_ip(node), "hostIPs": [{"ip": node_ip(node)}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": at,
        "conditions": conditions(&at, ready),
        "containerStatuses": containers,
        "qosClass": quantity::qos_class(pod),
    }})
}

/// The status of a pod whose containers exited with `code`.
fn exited(pod: &Pod, code: i64) -> Value {
    let at = now();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let containers: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": format!("{image}@sha256:simulated"),
                "containerID": container_id(pod, &name), "ready": false, "started": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": at, "finishedAt": at, "containerID": container_id(pod, &name)}},
            })
        })
        .collect();
    let mut conditions = conditions(&at, false);
    if let Some(list) = conditions.as_array_mut() {
        list[0]["status"] = json!("False");
    }
    json!({"status": {"phase": phase, "conditions": conditions, "containerStatuses": containers}})
}
