//! The node simulator's events, read as users read them, with real kubectl 1.33 and 1.36:
//! `kubectl describe pod` shows what the scheduler and the kubelet did, in upstream's
//! words and under their names; `kubectl get events` names the pod by uid and each
//! container by field path; `kubectl describe node` shows the node registered and ready;
//! a pod no node fits gets one `FailedScheduling` event, counted again when it is tried
//! again; a deleted pod's containers are stopped. The simulator runs as a kube-rs client
//! of the tenant, as `vcluster up --simulated-nodes` runs it.

mod common;

use common::Served;
use serde_json::Value;
use vcluster_testkit::clients::{KUBECTL_VERSIONS, Kubectl};

/// The events about the object named `name`, as `kubectl get events` lists them.
fn events_of(k: &Kubectl, name: &str, more: &str) -> Vec<Value> {
    let selector = format!("involvedObject.name={name}{more}");
    let out = k.ok(&["get", "events", "--field-selector", &selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("an event list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until `kubectl describe` of `object` shows a line for each (reason, from,
/// message); returns the output.
fn described(k: &Kubectl, object: &[&str], expected: &[(&str, &str, &str)]) -> String {
    let mut args = vec!["describe"];
    args.extend(object);
    k.eventually(&args, |out| {
        expected.iter().all(|(reason, from, message)| {
            out.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.nth(1) == Some(*reason) && line.contains(from) && line.contains(message)
            })
        })
    })
}

#[test]
fn the_simulator_records_upstreams_events() {
    let (served, opened) = Served::start(&["t"]);
    let config = opened[0]
        .admin_kubeconfig(&served.tenants, &served.server, true)
        .expect("kubeconfig");
    let path = served.write("kubeconfig", &config);
    served.runtime.spawn(async move {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&config).expect("kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("client config");
        let client = kube::Client::try_from(client_config).expect("client");
        let options = vcluster_nodesim::Options {
            nodes: 1,
            ..Default::default()
        };
        vcluster_nodesim::run(client, options).await
    });
    let k = Kubectl::new("v36", &path);
    // The default service account comes from a controller: creation waits for it.
    k.eventually(
        &[
            "run",
            "web",
            "--image=nginx:1.27",
            "--image-pull-policy=IfNotPresent",
        ],
        |_| true,
    );
    k.eventually(
        &["get", "pod", "web", "-o", "jsonpath={.status.phase}"],
        |p| p == "Running",
    );
    let uid = k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);

    let pulled =
        "Successfully pulled image \"nginx:1.27\" in 0s (0s including waiting). Image size: ";
    let expected = [
        (
            "Scheduled",
            "default-scheduler",
            "Successfully assigned default/web to sim-0",
        ),
        ("Pulling", "kubelet", "Pulling image \"nginx:1.27\""),
        ("Pulled", "kubelet", pulled),
        ("Created", "kubelet", "Created container: web"),
        ("Started", "kubelet", "Started container web"),
    ];
    for version in KUBECTL_VERSIONS {
        let out = described(&Kubectl::new(version, &path), &["pod", "web"], &expected);
        // In the order they happened: the scheduler's first.
        let (_, table) = out.split_once("Events:").expect("an events table");
        let reasons: Vec<&str> = table
            .lines()
            .skip(3)
            .filter_map(|line| line.split_whitespace().nth(1))
            .collect();
        let wanted: Vec<&str> = expected.iter().map(|(reason, _, _)| *reason).collect();
        assert_eq!(reasons, wanted, "{version}: {out}");
    }

    let events = events_of(&k, "web", "");
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for event in &events {
        let reason = event["reason"].as_str().unwrap_or_default();
        let object = &event["involvedObject"];
        assert_eq!(object["uid"], uid.as_str(), "{event:#}");
        assert_eq!(object["kind"], "Pod");
        assert_eq!(object["apiVersion"], "v1");
        assert_eq!(object["namespace"], "default");
        assert!(object["resourceVersion"].is_string(), "{event:#}");
        assert_eq!(event["metadata"]["namespace"], "default");
        let name = event["metadata"]["name"].as_str().unwrap_or_default();
        let suffix = name.strip_prefix("web.").unwrap_or_default();
        assert!(
            !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["count"], 1);
        assert!(event["firstTimestamp"].is_string() && event["lastTimestamp"].is_string());
        if reason == "Scheduled" {
            assert_eq!(event["source"]["component"], "default-scheduler");
            assert_eq!(event["reportingComponent"], "default-scheduler");
            assert!(object.get("fieldPath").is_none(), "{event:#}");
        } else {
            assert_eq!(object["fieldPath"], "spec.containers{web}", "{event:#}");
            assert_eq!(event["source"]["component"], "kubelet");
            assert_eq!(event["source"]["host"], "sim-0");
            assert_eq!(event["reportingComponent"], "kubelet");
            assert_eq!(event["reportingInstance"], "sim-0");
        }
    }

    // The image is on the node now: a second pod finds it there.
    k.ok(&[
        "run",
        "again",
        "--image=nginx:1.27",
        "--image-pull-policy=IfNotPresent",
    ]);
    described(
        &k,
        &["pod", "again"],
        &[
            (
                "Pulled",
                "kubelet",
                "Container image \"nginx:1.27\" already present on machine",
            ),
            ("Started", "kubelet", "Started container again"),
        ],
    );
    // A deleted pod's containers are stopped.
    k.ok(&["delete", "pod", "again", "--wait=false"]);
    k.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=again,reason=Killing",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        |out| out == "Stopping container again",
    );
    // Its kubelet then finishes it: the pod is gone, its grace not waited out.
    k.eventually(
        &[
            "get",
            "pods",
            "--field-selector=metadata.name=again",
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );

    for version in KUBECTL_VERSIONS {
        described(
            &Kubectl::new(version, &path),
            &["node", "sim-0"],
            &[
                ("Starting", "kubelet", "Starting kubelet."),
                (
                    "NodeReady",
                    "kubelet",
                    "Node sim-0 status is now: NodeReady",
                ),
                (
                    "RegisteredNode",
                    "node-controller",
                    "Node sim-0 event: Registered Node sim-0 in Controller",
                ),
            ],
        );
    }

    // No node has the label asked for: the scheduler says so once, and again (counted on
    // the same event) when the pod changes and it tries again.
    k.ok(&[
        "run",
        "nowhere",
        "--image=nginx:1.27",
        r#"--overrides={"spec":{"nodeSelector":{"disk":"none"}}}"#,
    ]);
    let failed = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
    described(
        &k,
        &["pod", "nowhere"],
        &[("FailedScheduling", "default-scheduler", failed)],
    );
    let unschedulable = |k: &Kubectl| {
        let events = events_of(k, "nowhere", ",reason=FailedScheduling");
        assert_eq!(events.len(), 1, "{events:#?}");
        events[0].clone()
    };
    let first = unschedulable(&k);
    assert_eq!(first["type"], "Warning");
    assert_eq!(first["message"], failed);
    assert_eq!(first["count"], 1, "tried again without a change: {first:#}");
    k.ok(&["annotate", "pod", "nowhere", "retry=1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let again = loop {
        let event = unschedulable(&k);
        if event["count"] == 2 {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never tried again: {event:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(again["metadata"]["name"], first["metadata"]["name"]);
    assert_eq!(again["firstTimestamp"], first["firstTimestamp"]);
    assert!(again["lastTimestamp"].as_str() >= first["lastTimestamp"].as_str());
}
