//! helm 3.18 against `vcluster up`: create a chart, install, upgrade with changed values,
//! roll back and uninstall (without `--wait`: nothing runs pods until the controllers come).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vcluster_testkit::clients::{Kubectl, helm_bin};

mod common;
use common::{StoreKind, Up};

struct Helm<'a> {
    kubeconfig: &'a Path,
    home: tempfile::TempDir,
}

impl Helm<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let home = self.home.path();
        let out = Command::new(helm_bin("v33"))
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

fn lifecycle(store: StoreKind) {
    let up = Up::start(store);
    let kubeconfig = up.kubeconfig();
    let helm = Helm {
        kubeconfig: &kubeconfig,
        home: tempfile::tempdir().expect("helm home"),
    };
    let k = Kubectl::new("v33", &kubeconfig);
    helm.ok(&["create", "chart"]);
    let installed = helm.ok(&["install", "demo", "./chart"]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(replicas(&k), 1);
    assert!(
        k.ok(&["get", "service", "demo-chart", "-o", "name"])
            .contains("service/demo-chart")
    );
    // helm keeps its releases in secrets, found by label.
    let releases = k.ok(&["get", "secrets", "-l", "owner=helm,name=demo", "-o", "name"]);
    assert_eq!(releases.lines().count(), 1, "{releases}");

    helm.ok(&["upgrade", "demo", "./chart", "--set", "replicaCount=3"]);
    assert_eq!(replicas(&k), 3);
    let history = helm.ok(&["history", "demo", "-o", "json"]);
    let history: Value = serde_json::from_str(&history).expect("history json");
    assert_eq!(history.as_array().map(Vec::len), Some(2));

    helm.ok(&["rollback", "demo", "1"]);
    assert_eq!(replicas(&k), 1, "the rollback restored revision 1's values");

    helm.ok(&["uninstall", "demo"]);
    let gone = k.fails(&["get", "deployment", "demo-chart"]);
    assert!(gone.contains("not found"), "{gone}");
    let left = k.ok(&["get", "secrets", "-l", "owner=helm", "-o", "name"]);
    assert!(
        left.trim().is_empty(),
        "release secrets left behind: {left}"
    );
}

#[test]
fn helm3_install_upgrade_rollback_uninstall_on_the_embedded_store() {
    lifecycle(StoreKind::Embedded);
}

#[test]
fn helm3_install_upgrade_rollback_uninstall_on_etcd() {
    lifecycle(StoreKind::Etcd);
}
