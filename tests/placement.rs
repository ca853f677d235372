//! Several host clusters end to end: `vcluster up --host eu=... --host us=...` against two
//! stand-in host clusters (`vcluster host`, a process each, two simulated nodes each),
//! driven by real kubectl on every side. A pinned namespace runs only on its host; an
//! unpinned one is placed on one host, recorded, and stays there; a spread one runs on
//! both, its Service on both; a pin to a host the syncer does not have runs nowhere and
//! says so; deleting a namespace leaves nothing on any host. Then, with a server of its
//! own: a host killed (SIGKILL) makes its mirrored nodes Unknown and tainted, and after
//! `--host-failover-after` its Deployment runs on the other host; when it comes back, what
//! it still ran is deleted there, and every tenant pod has exactly one host pod.

use serde_json::Value;
use vcluster_testkit::clients::Kubectl;
use vcluster_tests::{StoreKind, Tenant, Up, directly, items, json};

vcluster_tests::scenarios! {
    hosts: ["eu", "us"], host_nodes: 2;
    directly: [
        a_pinned_namespace_runs_only_on_its_host,
        an_unpinned_namespace_stays_on_the_host_it_was_placed_on,
        a_spread_namespace_runs_on_every_host,
        a_namespace_pinned_to_an_unknown_host_runs_nowhere,
    ],
}

const HOSTS: [&str; 2] = ["eu", "us"];

/// How long a step that waits on the failover's timers may take on a loaded machine.
const SLOW: std::time::Duration = std::time::Duration::from_secs(90);

/// Makes namespace `ns` with `annotations` from the start (so that no placement is made
/// before they are there).
fn namespace(k: &Kubectl, ns: &str, annotations: &[(&str, &str)]) {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::from(*value)))
        .collect();
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "annotations": annotations}
    });
    let run = k.run_with(&["apply", "-f", "-"], Some(&manifest.to_string()));
    assert!(run.ok, "{}", run.stderr);
}

/// The tenant pods of `ns`, not being deleted.
fn live_pods(k: &Kubectl, ns: &str) -> Vec<Value> {
    items(&k.ok(&["get", "pods", "-n", ns, "-o", "json"]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// The names of the host pods of tenant namespace `ns` on one host (by the markers).
fn host_pods(tenant: &Tenant, host: &str, ns: &str) -> Vec<String> {
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace={ns}",
        tenant.name
    );
    let h = tenant.kubectl_of_host(host, "v36");
    h.ok(&["get", "pods", "-A", "-l", &selector, "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_owned())
        .collect()
}

/// The host a tenant pod runs on, by the node it is bound to (`<node>.<host>`).
fn host_of(pod: &Value) -> &str {
    let node = pod["spec"]["nodeName"].as_str().expect("bound");
    let (_, host) = node.rsplit_once('.').expect("a mirrored node");
    host
}

/// Runs a Deployment of `replicas` in `ns` to the end of its rollout.
fn deployment(k: &Kubectl, ns: &str, name: &str, replicas: u32) {
    let replicas = format!("--replicas={replicas}");
    k.ok(&[
        "create",
        "deployment",
        name,
        "-n",
        ns,
        "--image=nginx",
        &replicas,
    ]);
    k.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "-n",
        ns,
        "--timeout=60s",
    ]);
}

fn a_pinned_namespace_runs_only_on_its_host(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    namespace(&k, "pinned", &[("vcluster.io/host-cluster", "us")]);
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "pinned",
        "--from-literal=a=1",
    ]);
    deployment(&k, "pinned", "web", 3);
    k.ok(&[
        "set",
        "env",
        "deployment/web",
        "-n",
        "pinned",
        "--from=configmap/settings",
    ]);
    k.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "pinned",
        "--timeout=60s",
    ]);
    k.ok(&["expose", "deployment", "web", "-n", "pinned", "--port=80"]);

    let pods = live_pods(&k, "pinned");
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| host_of(p) == "us"), "{pods:#?}");
    let placed = json(&k.ok(&["get", "namespace", "pinned", "-o", "json"]));
    assert_eq!(
        placed["metadata"]["annotations"]["vcluster.io/placed-on"],
        "us"
    );
    assert!(host_pods(tenant, "eu", "pinned").is_empty());
    // (The pods the rollout replaced may still be going on the host.)
    let us_pods = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=pinned",
        tenant.name
    );
    tenant.kubectl_of_host("us", "v36").eventually(
        &["get", "pods", "-A", "-l", &us_pods, "-o", "name"],
        |out| out.lines().count() == 3,
    );
    // Its ConfigMap and Service are on its host, not on the other.
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=pinned",
        tenant.name
    );
    let us = tenant.kubectl_of_host("us", "v36");
    us.eventually(
        &[
            "get",
            "configmaps,services",
            "-A",
            "-l",
            &selector,
            "-o",
            "name",
        ],
        |out| out.contains("configmap/settings") && out.contains("service/web"),
    );
    let eu = tenant.kubectl_of_host("eu", "v36");
    let on_eu = eu.ok(&[
        "get",
        "configmaps,services,pods",
        "-A",
        "-l",
        &selector,
        "-o",
        "name",
    ]);
    assert!(on_eu.trim().is_empty(), "{on_eu}");
    let service = json(&k.ok(&["get", "service", "web", "-n", "pinned", "-o", "json"]));
    let ips = service["metadata"]["annotations"]["vcluster.io/host-cluster-ips"]
        .as_str()
        .unwrap_or_default();
    assert!(ips.starts_with("us=") && !ips.contains(','), "{ips}");
}

fn an_unpinned_namespace_stays_on_the_host_it_was_placed_on(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    namespace(&k, "free", &[]);
    deployment(&k, "free", "web", 2);
    let placed = json(&k.ok(&["get", "namespace", "free", "-o", "json"]));
    let host = placed["metadata"]["annotations"]["vcluster.io/placed-on"]
        .as_str()
        .expect("placed")
        .to_owned();
    assert!(HOSTS.contains(&host.as_str()), "{host}");
    let other = HOSTS.iter().find(|h| **h != host).expect("another host");
    // Scaled up, it stays where it is: a namespace is placed once.
    k.ok(&["scale", "deployment/web", "-n", "free", "--replicas=5"]);
    k.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "free",
        "--timeout=60s",
    ]);
    let pods = live_pods(&k, "free");
    assert_eq!(pods.len(), 5);
    assert!(pods.iter().all(|p| host_of(p) == host), "{pods:#?}");
    for pod in &pods {
        assert_eq!(
            pod["metadata"]["annotations"]["vcluster.io/placed-on"],
            host.as_str()
        );
    }
    assert_eq!(host_pods(tenant, &host, "free").len(), 5);
    assert!(host_pods(tenant, other, "free").is_empty());
}

fn a_spread_namespace_runs_on_every_host(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    namespace(&k, "wide", &[("vcluster.io/placement", "spread")]);
    deployment(&k, "wide", "web", 4);
    k.ok(&["expose", "deployment", "web", "-n", "wide", "--port=80"]);
    let pods = live_pods(&k, "wide");
    assert_eq!(pods.len(), 4);
    for host in HOSTS {
        let here = pods.iter().filter(|p| host_of(p) == host).count();
        assert!(here >= 1, "no pod on {host}: {pods:#?}");
        // (A pod the rollout replaced may still be going on the host.)
        let selector = format!(
            "vcluster.io/tenant={},vcluster.io/namespace=wide",
            tenant.name
        );
        tenant.kubectl_of_host(host, "v36").eventually(
            &["get", "pods", "-A", "-l", &selector, "-o", "name"],
            |out| out.lines().count() == here,
        );
    }
    // Its Service is on both, each host's address in the annotation.
    let service = k.eventually(
        &[
            "get",
            "service",
            "web",
            "-n",
            "wide",
            "-o",
            "jsonpath={.metadata.annotations.vcluster\\.io/host-cluster-ips}",
        ],
        |out| out.contains("eu=") && out.contains("us="),
    );
    assert_eq!(service.split(',').count(), 2, "{service}");
    // Each host's endpoints of it hold that host's pods only (the replicated model: a pod
    // reaches the Service through its own host's service network).
    for host in HOSTS {
        let here: Vec<&Value> = pods.iter().filter(|p| host_of(p) == host).collect();
        let h = tenant.kubectl_of_host(host, "v36");
        let selector = format!(
            "vcluster.io/tenant={},vcluster.io/namespace=wide",
            tenant.name
        );
        let host_namespace = h.ok(&["get", "namespaces", "-l", &selector, "-o", "name"]);
        let host_namespace = host_namespace.trim().trim_start_matches("namespace/");
        let addresses = h.eventually(
            &[
                "get",
                "endpoints",
                "web",
                "-n",
                host_namespace,
                "-o",
                "jsonpath={.subsets[*].addresses[*].targetRef.name}",
            ],
            |out| out.split_whitespace().count() == here.len(),
        );
        for pod in here {
            let name = pod["metadata"]["name"].as_str().expect("a name");
            assert!(addresses.contains(name), "{host}: {addresses}");
        }
    }

    // Deleted, it leaves nothing on any host.
    k.ok(&["delete", "namespace", "wide", "--timeout=60s"]);
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=wide",
        tenant.name
    );
    for host in HOSTS {
        let h = tenant.kubectl_of_host(host, "v36");
        h.eventually(
            &[
                "get",
                "namespaces,pods,services",
                "-A",
                "-l",
                &selector,
                "-o",
                "name",
            ],
            |out| out.trim().is_empty(),
        );
    }
}

fn a_namespace_pinned_to_an_unknown_host_runs_nowhere(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    namespace(&k, "lost", &[("vcluster.io/host-cluster", "mars")]);
    k.ok(&["run", "one", "-n", "lost", "--image=busybox"]);
    // About a cluster-scoped object, so in `default`, as upstream's recorders put them.
    let about_lost =
        |e: &Value| e["reason"] == "UnknownHostCluster" && e["involvedObject"]["name"] == "lost";
    let events = k.eventually(&["get", "events", "-n", "default", "-o", "json"], |out| {
        items(out).iter().any(about_lost)
    });
    let event = items(&events)
        .into_iter()
        .find(about_lost)
        .expect("the event");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["involvedObject"]["kind"], "Namespace");
    let note = event["message"].as_str().expect("a message");
    assert!(note.contains("mars") && note.contains("eu"), "{note}");
    let pod = json(&k.ok(&["get", "pod", "one", "-n", "lost", "-o", "json"]));
    assert!(pod["spec"]["nodeName"].is_null(), "{pod:#}");
    assert!(pod["metadata"]["annotations"]["vcluster.io/placed-on"].is_null());
    for host in HOSTS {
        assert!(host_pods(tenant, host, "lost").is_empty(), "{host}");
    }
    // Pinned to a real host, it runs there.
    k.ok(&[
        "annotate",
        "--overwrite",
        "namespace",
        "lost",
        "vcluster.io/host-cluster=eu",
    ]);
    k.ok(&[
        "wait",
        "pod/one",
        "-n",
        "lost",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let pod = json(&k.ok(&["get", "pod", "one", "-n", "lost", "-o", "json"]));
    assert_eq!(host_of(&pod), "eu");
}

/// A host lost and back: its Deployment is replaced on the other host after the failover
/// time; what it still ran is deleted there when it returns; one host pod per tenant pod.
#[test]
fn a_lost_hosts_pods_are_replaced_elsewhere_and_collected_when_it_returns() {
    let mut up = Up::start_on_hosts(
        StoreKind::Embedded,
        &["failover"],
        &HOSTS,
        2,
        &["--host-failover-after", "5s"],
    );
    let tenant = up.tenant("failover");
    let k = tenant.kubectl("v36");
    namespace(&k, "shop", &[("vcluster.io/host-cluster", "eu")]);
    deployment(&k, "shop", "cart", 2);
    let shop_pods: Vec<String> = live_pods(&k, "shop")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("a name").to_owned())
        .collect();
    // The pinned namespace is now unpinned, so that it can move when eu is lost.
    k.ok(&["annotate", "namespace", "shop", "vcluster.io/host-cluster-"]);
    let nodes = k.ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.contains(".eu"), "{nodes}");

    up.host_cluster_mut("eu").kill();
    // Its mirrored nodes go Unknown, with upstream's taints.
    k.eventually_within(
        SLOW,
        &[
            "get",
            "nodes",
            "-l",
            "vcluster.io/host-cluster=eu",
            "-o",
            "json",
        ],
        |out| {
            let nodes = items(out);
            !nodes.is_empty()
                && nodes.iter().all(|n| {
                    let ready = n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["type"] == "Ready");
                    let tainted = n["spec"]["taints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|t| {
                            t["key"] == "node.kubernetes.io/unreachable"
                                && t["effect"] == "NoExecute"
                        });
                    ready.is_some_and(|c| c["status"] == "Unknown") && tainted
                })
        },
    );
    // After the failover time, its pods are Terminating and replaced on us.
    k.eventually_within(SLOW, &["get", "pods", "-n", "shop", "-o", "json"], |out| {
        let live: Vec<Value> = items(out)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        live.len() == 2
            && live
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && host_of(p) == "us")
    });
    let old = items(&k.ok(&["get", "pods", "-n", "shop", "-o", "json"]));
    let terminating: Vec<&Value> = old
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(
        terminating.len(),
        2,
        "the lost pods wait for their host: {old:#?}"
    );
    let placed = json(&k.ok(&["get", "namespace", "shop", "-o", "json"]));
    assert_eq!(
        placed["metadata"]["annotations"]["vcluster.io/placed-on"],
        "us"
    );

    // eu comes back: its copies are deleted, the Terminating pods finish, one host pod
    // each.
    up.host_cluster_mut("eu").restart();
    k.eventually_within(SLOW, &["get", "pods", "-n", "shop", "-o", "name"], |out| {
        out.lines().count() == 2 && shop_pods.iter().all(|old| !out.contains(old.as_str()))
    });
    let eu = tenant.kubectl_of_host("eu", "v36");
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=shop",
        tenant.name
    );
    eu.eventually_within(
        SLOW,
        &["get", "pods", "-A", "-l", &selector, "-o", "name"],
        |out| out.trim().is_empty(),
    );
    let on_us = host_pods(&tenant, "us", "shop");
    let live: Vec<String> = live_pods(&k, "shop")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("a name").to_owned())
        .collect();
    let mut on_us_sorted = on_us.clone();
    on_us_sorted.sort();
    let mut live_sorted = live.clone();
    live_sorted.sort();
    assert_eq!(on_us_sorted, live_sorted, "one host pod per tenant pod");
    // Its mirrored nodes are Ready again (or gone with their pods).
    k.eventually_within(
        SLOW,
        &[
            "get",
            "nodes",
            "-l",
            "vcluster.io/host-cluster=eu",
            "-o",
            "json",
        ],
        |out| {
            items(out).iter().all(|n| {
                n["spec"]["taints"]
                    .as_array()
                    .is_none_or(|ts| ts.is_empty())
            })
        },
    );
}
