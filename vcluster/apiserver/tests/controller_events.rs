//! The controllers record upstream's events, and real kubectl shows them: `kubectl
//! describe deployment|replicaset` lists `ScalingReplicaSet` and `SuccessfulCreate` /
//! `SuccessfulDelete` with their messages and sources, and `kubectl get events --watch`
//! sees them arrive during a rollout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::Served;
use vcluster_testkit::clients::Kubectl;

#[test]
fn rollouts_are_told_in_events_that_describe_and_watch_show() {
    let (served, opened) = Served::start(&["t"]);
    let path = served.admin_kubeconfig(&opened[0]);
    let k = Kubectl::new("v36", &path);
    k.ok(&["create", "namespace", "ev"]);

    // A watch of the namespace's events, started before anything happens in it.
    let mut watch = k
        .command(&["get", "events", "-n", "ev", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get events --watch");
    let watched = BufReader::new(watch.stdout.take().expect("stdout"));

    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
        "-n",
        "ev",
    ]);
    for version in ["v33", "v36"] {
        let k = Kubectl::new(version, &path);
        let described = k.eventually(&["describe", "deployment", "web", "-n", "ev"], |out| {
            out.contains("ScalingReplicaSet")
        });
        assert!(
            described.contains("deployment-controller")
                && described.contains("Scaled up replica set web-")
                && described.contains("from 0 to 3"),
            "{version}: {described}"
        );
        let described = k.eventually(&["describe", "replicaset", "-n", "ev"], |out| {
            out.matches("SuccessfulCreate").count() >= 3
        });
        assert!(
            described.contains("replicaset-controller") && described.contains("Created pod: web-"),
            "{version}: {described}"
        );
    }
    k.ok(&["scale", "deployment", "web", "--replicas=1", "-n", "ev"]);
    let described = k.eventually(&["describe", "replicaset", "-n", "ev"], |out| {
        out.matches("SuccessfulDelete").count() >= 2
    });
    assert!(described.contains("Deleted pod: web-"), "{described}");
    let deployment = k.eventually(&["describe", "deployment", "web", "-n", "ev"], |out| {
        out.contains("Scaled down replica set")
    });
    assert!(deployment.contains("from 3 to 1"), "{deployment}");

    // The events came to the watch as they were written: three creates, two deletes and
    // the two scalings at least.
    let mut seen = Vec::new();
    for line in watched.lines() {
        let line = line.expect("a line");
        seen.push(line);
        if seen.len() >= 7 {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen.iter().all(|l| l.starts_with("event/")), "{seen:?}");
    let json: serde_json::Value = serde_json::from_str(&k.ok(&[
        "get",
        "events",
        "-n",
        "ev",
        "--field-selector",
        "reason=ScalingReplicaSet",
        "-o",
        "json",
    ]))
    .expect("json");
    let items = json["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{json}");
    assert!(
        items
            .iter()
            .all(|e| e["involvedObject"]["kind"] == "Deployment"
                && e["involvedObject"]["name"] == "web"
                && e["type"] == "Normal"
                && e["count"] == 1)
    );
}
