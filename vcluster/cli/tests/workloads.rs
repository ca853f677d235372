//! Workloads on `vcluster up --simulated-nodes`, driven by real kubectl (1.33 and 1.36) on
//! the embedded store and on etcd: Deployments roll out to Running pods, scale, update,
//! roll back; deletes cascade in the three propagation modes, across namespaced,
//! cluster-scoped and custom owners.

use serde_json::Value;
use vcluster_testkit::clients::{KUBECTL_VERSIONS, Kubectl};

mod common;
use common::{StoreKind, Up};

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}): {out}"))
}

fn items(out: &str) -> Vec<Value> {
    json(out)["items"].as_array().cloned().unwrap_or_default()
}

/// The images of the running pods labelled `app=<app>`.
fn running_images(k: &Kubectl, ns: &str, app: &str) -> Vec<String> {
    let pods = k.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("app={app}"),
        "-o",
        "json",
    ]);
    let mut images: Vec<String> = items(&pods)
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    images.sort();
    images
}

fn rollout(k: &Kubectl, ns: &str, name: &str) {
    let out = k.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "-n",
        ns,
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

/// A Deployment's life: create, roll out, scale, update, roll back.
fn deployment_lifecycle(k: &Kubectl, ns: &str) {
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
        "-n",
        ns,
    ]);
    rollout(k, ns, "web");
    let pods = items(&k.ok(&["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"]));
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
        assert!(
            pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("sim-")),
            "{pod}"
        );
        assert!(
            pod["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.244.")),
            "{pod}"
        );
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("ReplicaSet"), Some(true))
        );
    }
    let d = json(&k.ok(&["get", "deployment", "web", "-n", ns, "-o", "json"]));
    assert_eq!(d["status"]["availableReplicas"], 3, "{d}");
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let conditions = d["status"]["conditions"].as_array().expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
    );
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable")
    );

    k.ok(&["scale", "deployment/web", "--replicas=5", "-n", ns]);
    rollout(k, ns, "web");
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:1"; 5]);
    k.ok(&["scale", "deployment/web", "--replicas=2", "-n", ns]);
    rollout(k, ns, "web");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"],
        |out| items(out).len() == 2,
    );

    k.ok(&["set", "image", "deployment/web", "nginx=nginx:2", "-n", ns]);
    rollout(k, ns, "web");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"],
        |out| items(out).len() == 2,
    );
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:2"; 2]);
    let sets = items(&k.ok(&["get", "rs", "-n", ns, "-l", "app=web", "-o", "json"]));
    assert_eq!(sets.len(), 2, "one ReplicaSet per template");

    k.ok(&["rollout", "undo", "deployment/web", "-n", ns]);
    rollout(k, ns, "web");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"],
        |out| items(out).len() == 2,
    );
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:1"; 2]);
    let sets = items(&k.ok(&["get", "rs", "-n", ns, "-l", "app=web", "-o", "json"]));
    assert_eq!(sets.len(), 2, "the undo revived the first ReplicaSet");
    let history = k.ok(&["rollout", "history", "deployment/web", "-n", ns]);
    assert!(
        history.contains('2') && history.contains('3') && !history.contains("\n1 "),
        "{history}"
    );

    // Recreate: every old pod goes before a new one starts.
    k.ok(&[
        "patch",
        "deployment/web",
        "-n",
        ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/strategy","value":{"type":"Recreate"}}]"#,
    ]);
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:3", "-n", ns]);
    rollout(k, ns, "web");
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:3"; 2]);

    // Paused: a template change waits for the resume.
    k.ok(&["rollout", "pause", "deployment/web", "-n", ns]);
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:4", "-n", ns]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:3"; 2]);
    k.ok(&["rollout", "resume", "deployment/web", "-n", ns]);
    rollout(k, ns, "web");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"],
        |out| items(out).len() == 2,
    );
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:4"; 2]);
}

/// `kubectl delete` in the three propagation modes.
fn cascading_deletes(k: &Kubectl, ns: &str) {
    let objects = |app: &str| {
        let rs = items(&k.ok(&[
            "get",
            "rs",
            "-n",
            ns,
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ]));
        let pods = items(&k.ok(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ]));
        (rs, pods)
    };
    for app in ["bg", "fg", "orphan"] {
        k.ok(&[
            "create",
            "deployment",
            app,
            "--image=nginx",
            "--replicas=2",
            "-n",
            ns,
        ]);
        rollout(k, ns, app);
    }
    // Background: the Deployment goes at once, its ReplicaSet and pods after it.
    k.ok(&["delete", "deployment", "bg", "-n", ns]);
    k.eventually(
        &["get", "rs,pods", "-n", ns, "-l", "app=bg", "-o", "json"],
        |out| items(out).is_empty(),
    );

    // Foreground: the Deployment goes last, so once it is gone nothing of it is left.
    k.ok(&[
        "delete",
        "deployment",
        "fg",
        "-n",
        ns,
        "--cascade=foreground",
    ]);
    let (rs, pods) = objects("fg");
    assert!(
        rs.is_empty() && pods.is_empty(),
        "left behind: {rs:?} {pods:?}"
    );

    // Orphan: the ReplicaSet and its pods stay, no longer owned.
    k.ok(&[
        "delete",
        "deployment",
        "orphan",
        "-n",
        ns,
        "--cascade=orphan",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (rs, pods) = objects("orphan");
    assert_eq!((rs.len(), pods.len()), (1, 2));
    assert!(rs[0]["metadata"]["ownerReferences"].is_null(), "{}", rs[0]);
    k.ok(&["delete", "rs", "-n", ns, "-l", "app=orphan"]);
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=orphan", "-o", "json"],
        |out| items(out).is_empty(),
    );

    // A cluster-scoped owner of a namespaced object, and a dependent whose owner never
    // existed.
    let role = json(&k.ok(&[
        "create",
        "clusterrole",
        &format!("owner-{ns}"),
        "--verb=get",
        "--resource=pods",
        "-o",
        "json",
    ]));
    let owned = |name: &str, uid: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{ns}","ownerReferences":[{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","name":"owner-{ns}","uid":"{uid}"}}]}}}}"#
        )
    };
    let uid = role["metadata"]["uid"].as_str().expect("uid");
    k.run_with(&["create", "-f", "-"], Some(&owned("owned", uid)));
    k.run_with(
        &["create", "-f", "-"],
        Some(&owned("dangling", "00000000-0000-0000-0000-000000000000")),
    );
    k.eventually(&["get", "cm", "-n", ns, "-o", "name"], |out| {
        !out.contains("dangling")
    });
    assert!(
        k.ok(&["get", "cm", "-n", ns, "-o", "name"])
            .contains("configmap/owned")
    );
    k.ok(&["delete", "clusterrole", &format!("owner-{ns}")]);
    k.eventually(&["get", "cm", "-n", ns, "-o", "name"], |out| {
        !out.contains("owned")
    });
}

/// A namespace's deletion takes its workloads with it.
fn namespace_deletion(k: &Kubectl, ns: &str) {
    k.ok(&[
        "create",
        "deployment",
        "doomed",
        "--image=nginx",
        "--replicas=2",
        "-n",
        ns,
    ]);
    rollout(k, ns, "doomed");
    k.ok(&["delete", "namespace", ns, "--timeout=60s"]);
    let left = k.run(&["get", "namespace", ns]);
    assert!(!left.ok, "namespace {ns} is still there");
    let pods = items(&k.ok(&["get", "pods", "-A", "-l", "app=doomed", "-o", "json"]));
    assert!(
        pods.iter().all(|p| p["metadata"]["namespace"] != ns),
        "{pods:?}"
    );
}

fn every_scenario(store: StoreKind) {
    let up = Up::with_nodes(store, 3);
    for version in KUBECTL_VERSIONS {
        let k = Kubectl::new(version, up.kubeconfig());
        let nodes = items(&k.ok(&["get", "nodes", "-o", "json"]));
        assert_eq!(nodes.len(), 3);
        assert!(
            nodes
                .iter()
                .all(|n| n["status"]["conditions"].as_array().is_some_and(|c| c
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")))
        );
        let ns = format!("workloads-{version}");
        k.ok(&["create", "namespace", &ns]);
        deployment_lifecycle(&k, &ns);
        cascading_deletes(&k, &ns);
        namespace_deletion(&k, &ns);
    }
}

#[test]
fn workloads_on_the_embedded_store() {
    every_scenario(StoreKind::Embedded);
}

#[test]
fn workloads_on_etcd() {
    every_scenario(StoreKind::Etcd);
}
