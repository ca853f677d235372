//! A new object of a built-in kind is answered with the status Go serializes for an empty
//! status struct: every required number at zero (a DaemonSet's `currentNumberScheduled`,
//! a ReplicaSet's `replicas`), which typed clients' models insist on. Checked on the create
//! response itself, before any controller has written a status.

mod common;

use common::Served;
use serde_json::{Value, json};
use vcluster_testkit::clients::Kubectl;

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: busybox}]}
";

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: a, image: nginx}]}
";

#[test]
fn created_objects_carry_the_status_fields_go_always_writes() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let create = |manifest: &str| -> Value {
        let created = k.run_with(&["create", "-f", "-", "-o", "json"], Some(manifest));
        assert!(created.ok, "{}", created.stderr);
        serde_json::from_str(&created.stdout).expect("json")
    };
    let daemon_set = create(DAEMON_SET);
    assert_eq!(
        daemon_set["status"],
        json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0})
    );
    assert_eq!(create(REPLICA_SET)["status"], json!({"replicas": 0}));
    // The status is the server's: the creator does not own it.
    let owned = k.ok(&[
        "get",
        "daemonset",
        "agent",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[0].fieldsV1}",
    ]);
    assert!(
        owned.contains("f:spec") && !owned.contains("f:status"),
        "{owned}"
    );
}
