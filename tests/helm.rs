//! helm 3.18 and helm 4 (server-side apply) against `vcluster up --simulated-nodes`: create a
//! chart (with a CRD and a custom resource of it, a StatefulSet and a Job hook), install and
//! upgrade with `--wait` (workloads available, the hook completed), roll back and uninstall.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vcluster_testkit::clients::{Kubectl, helm_bin};
use vcluster_tests::{Tenant, directly};

// Nodes, so that `--wait` has pods to wait for.
vcluster_tests::scenarios! {
    simulated_nodes: 2;
    directly: [
        helm3_install_upgrade_rollback_uninstall,
        helm4_server_side_apply_lifecycle,
    ],
}

fn helm3_install_upgrade_rollback_uninstall(tenant: &Tenant) {
    lifecycle(tenant, "v33");
}

fn helm4_server_side_apply_lifecycle(tenant: &Tenant) {
    lifecycle(tenant, "v36");
}

struct Helm<'a> {
    /// `v33` is helm 3.18 (client-side three-way merges), `v36` helm 4 (server-side apply).
    version: &'static str,
    kubeconfig: &'a Path,
    home: tempfile::TempDir,
}

impl Helm<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let home = self.home.path();
        let out = Command::new(helm_bin(self.version))
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(home)
            .output()
            .expect("run helm");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn replicas(k: &Kubectl) -> i64 {
    let d: Value = serde_json::from_str(&k.ok(&["get", "deployment", "demo-chart", "-o", "json"]))
        .expect("json");
    d["spec"]["replicas"].as_i64().expect("replicas")
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.demo.example.com}
spec:
  group: demo.example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
";

const WIDGET: &str = "apiVersion: demo.example.com/v1
kind: Widget
metadata:
  name: {{ include \"chart.fullname\" . }}
spec:
  size: {{ .Values.replicaCount }}
";

/// A hook helm runs after each install and upgrade, and waits for.
const HOOK: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include \"chart.fullname\" . }}-migrate
  annotations:
    helm.sh/hook: post-install,post-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox, command: [\"true\"]}]
";

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include \"chart.fullname\" . }}-db
spec:
  serviceName: {{ include \"chart.fullname\" . }}-db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: \"postgres:{{ .Values.dbVersion | default \"16\" }}\"}]
";

fn available(k: &Kubectl) -> i64 {
    let d: Value = serde_json::from_str(&k.ok(&["get", "deployment", "demo-chart", "-o", "json"]))
        .expect("json");
    d["status"]["availableReplicas"].as_i64().unwrap_or(0)
}

fn widget_size(k: &Kubectl) -> i64 {
    let w: Value = serde_json::from_str(&k.ok(&[
        "get",
        "widgets.demo.example.com",
        "demo-chart",
        "-o",
        "json",
    ]))
    .expect("json");
    w["spec"]["size"].as_i64().expect("size")
}

fn lifecycle(tenant: &Tenant, version: &'static str) {
    let helm = Helm {
        version,
        kubeconfig: tenant.kubeconfig(),
        home: tempfile::tempdir().expect("helm home"),
    };
    let k = tenant.kubectl("v33");
    helm.ok(&["create", "chart"]);
    let chart = helm.home.path().join("chart");
    std::fs::create_dir_all(chart.join("crds")).expect("crds directory");
    std::fs::write(chart.join("crds/widget.yaml"), CRD).expect("write the CRD");
    std::fs::write(chart.join("templates/widget.yaml"), WIDGET).expect("write the widget");
    std::fs::write(chart.join("templates/migrate.yaml"), HOOK).expect("write the hook");
    std::fs::write(chart.join("templates/db.yaml"), STATEFULSET).expect("write the set");
    let installed = helm.ok(&["install", "demo", "./chart", "--wait", "--timeout=60s"]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(replicas(&k), 1);
    assert_eq!(available(&k), 1, "--wait waited for the Deployment");
    let db: Value =
        serde_json::from_str(&k.ok(&["get", "statefulset", "demo-chart-db", "-o", "json"]))
            .expect("json");
    assert_eq!(
        db["status"]["readyReplicas"], 2,
        "--wait waited for the StatefulSet"
    );
    let hook: Value =
        serde_json::from_str(&k.ok(&["get", "job", "demo-chart-migrate", "-o", "json"]))
            .expect("json");
    assert_eq!(hook["status"]["succeeded"], 1, "the hook ran to completion");
    assert_eq!(widget_size(&k), 1);
    assert!(
        k.ok(&["get", "service", "demo-chart", "-o", "name"])
            .contains("service/demo-chart")
    );
    // helm keeps its releases in secrets, found by label.
    let releases = k.ok(&["get", "secrets", "-l", "owner=helm,name=demo", "-o", "name"]);
    assert_eq!(releases.lines().count(), 1, "{releases}");

    helm.ok(&[
        "upgrade",
        "demo",
        "./chart",
        "--set",
        "replicaCount=3,dbVersion=17",
        "--wait",
        "--timeout=60s",
    ]);
    assert_eq!(replicas(&k), 3);
    assert_eq!(available(&k), 3, "--wait waited for the scaled Deployment");
    let db_pods: Value =
        serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=db", "-o", "json"])).expect("json");
    let images: Vec<&str> = db_pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["spec"]["containers"][0]["image"].as_str())
        .collect();
    assert_eq!(
        images,
        ["postgres:17", "postgres:17"],
        "--wait waited for the rolling update"
    );
    assert_eq!(widget_size(&k), 3, "the custom resource was upgraded");
    let history = helm.ok(&["history", "demo", "-o", "json"]);
    let history: Value = serde_json::from_str(&history).expect("history json");
    assert_eq!(history.as_array().map(Vec::len), Some(2));

    helm.ok(&["rollback", "demo", "1"]);
    assert_eq!(replicas(&k), 1, "the rollback restored revision 1's values");
    assert_eq!(widget_size(&k), 1);

    helm.ok(&["uninstall", "demo"]);
    let gone = k.fails(&["get", "deployment", "demo-chart"]);
    assert!(gone.contains("not found"), "{gone}");
    let gone = k.fails(&["get", "widgets.demo.example.com", "demo-chart"]);
    assert!(gone.contains("not found"), "{gone}");
    // helm never deletes the CRDs of a chart's crds/ directory.
    k.ok(&["get", "crd", "widgets.demo.example.com"]);
    let left = k.ok(&["get", "secrets", "-l", "owner=helm", "-o", "name"]);
    assert!(
        left.trim().is_empty(),
        "release secrets left behind: {left}"
    );
}
