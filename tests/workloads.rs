//! Workloads on `vcluster up --simulated-nodes`, driven by real kubectl (1.33 and 1.36) on
//! the embedded store and on etcd: Deployments roll out to Running pods, scale, update,
//! roll back; StatefulSets, DaemonSets, Jobs and CronJobs do their work; Services get
//! addresses and endpoints; quotas, LimitRanges and pod security refuse what they should;
//! deletes cascade in
//! the three propagation modes, across namespaced and cluster-scoped owners.

use serde_json::Value;
use vcluster_testkit::clients::{KUBECTL_VERSIONS, Kubectl};
use vcluster_tests::{Tenant, Up, directly, items, json};

vcluster_tests::scenarios! {
    simulated_nodes: 3, once_up: create_cron_jobs;
    in_each_namespace: [
        deployment_lifecycle,
        cascading_deletes,
        services,
        admission,
        service_accounts,
        autoscaler,
        legacy_token,
        other_workloads,
        namespace_deletion,
    ],
    directly: [ticking_cron_jobs],
}

/// Runs a scenario with each kubectl version in a namespace of its own,
/// `workloads-<version>`, once the tenant's three simulated nodes are Ready.
fn in_each_namespace(tenant: &Tenant, scenario: fn(&Kubectl, &str)) {
    for version in KUBECTL_VERSIONS {
        let k = tenant.kubectl(version);
        let ns = format!("workloads-{version}");
        k.ok(&["create", "namespace", &ns]);
        let nodes = items(&k.ok(&["get", "nodes", "-o", "json"]));
        assert_eq!(nodes.len(), 3);
        assert!(
            nodes
                .iter()
                .all(|n| n["status"]["conditions"].as_array().is_some_and(|c| c
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")))
        );
        scenario(&k, &ns);
    }
}

/// The pods labelled `app=<app>`.
fn app_pods(k: &Kubectl, ns: &str, app: &str) -> Vec<Value> {
    let label = format!("app={app}");
    items(&k.ok(&["get", "pods", "-n", ns, "-l", &label, "-o", "json"]))
}

/// The images of the running pods labelled `app=<app>`.
fn running_images(k: &Kubectl, ns: &str, app: &str) -> Vec<String> {
    let pods = app_pods(k, ns, app);
    let mut images: Vec<String> = pods
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

/// `kubectl rollout status` of `object` (`kind/name`), for 60 s at most; its output.
fn rollout_status(k: &Kubectl, ns: &str, object: &str) -> String {
    k.ok(&["rollout", "status", object, "-n", ns, "--timeout=60s"])
}

/// Until the Deployment `name` has rolled out.
fn rollout(k: &Kubectl, ns: &str, name: &str) {
    let out = rollout_status(k, ns, &format!("deployment/{name}"));
    assert!(out.contains("successfully rolled out"), "{out}");
}

/// Waits until `count` pods of `app` are left (the old ones of a rollout gone).
fn pods_settle(k: &Kubectl, ns: &str, app: &str, count: usize) {
    let label = format!("app={app}");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", &label, "-o", "json"],
        |out| items(out).len() == count,
    );
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
    pods_settle(k, ns, "web", 2);

    k.ok(&["set", "image", "deployment/web", "nginx=nginx:2", "-n", ns]);
    rollout(k, ns, "web");
    pods_settle(k, ns, "web", 2);
    assert_eq!(running_images(k, ns, "web"), vec!["nginx:2"; 2]);
    let sets = items(&k.ok(&["get", "rs", "-n", ns, "-l", "app=web", "-o", "json"]));
    assert_eq!(sets.len(), 2, "one ReplicaSet per template");

    k.ok(&["rollout", "undo", "deployment/web", "-n", ns]);
    rollout(k, ns, "web");
    pods_settle(k, ns, "web", 2);
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
    pods_settle(k, ns, "web", 2);
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
        (rs, app_pods(k, ns, app))
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

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
";

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: agent:1}]
";

const JOBS: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {nodesim.vcluster.io/exit-code: \"3\"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
";

fn pod_names(k: &Kubectl, ns: &str, app: &str) -> Vec<String> {
    let mut names: Vec<String> = app_pods(k, ns, app)
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// Service addresses, and the endpoints of the pods they select.
fn services(k: &Kubectl, ns: &str) {
    let kubernetes = json(&k.ok(&[
        "get",
        "service",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "json",
    ]));
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");
    k.ok(&[
        "create",
        "deployment",
        "api",
        "--image=nginx",
        "--replicas=2",
        "--port=8080",
        "-n",
        ns,
    ]);
    rollout(k, ns, "api");
    k.ok(&[
        "expose",
        "deployment",
        "api",
        "--port=80",
        "--target-port=8080",
        "--type=NodePort",
        "-n",
        ns,
    ]);
    let svc = json(&k.ok(&["get", "service", "api", "-n", ns, "-o", "json"]));
    let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .parse()
        .expect("an IP");
    assert!(
        ip.octets()[0] == 10 && (96..112).contains(&ip.octets()[1]),
        "{ip}"
    );
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    // The address is the Service's: another may not take it.
    let clash = k.fails(&[
        "create",
        "service",
        "clusterip",
        "copy",
        "--tcp=80",
        &format!("--clusterip={ip}"),
        "-n",
        ns,
    ]);
    assert!(
        clash.contains("provided IP is already allocated"),
        "{clash}"
    );
    let addresses = |out: &str| -> usize {
        json(out)["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["addresses"].as_array().map_or(0, Vec::len))
            .sum()
    };
    let ep = k.eventually(
        &["get", "endpoints", "api", "-n", ns, "-o", "json"],
        |out| addresses(out) == 2,
    );
    assert_eq!(json(&ep)["subsets"][0]["ports"][0]["port"], 8080);
    k.ok(&["scale", "deployment/api", "--replicas=3", "-n", ns]);
    k.eventually(
        &["get", "endpoints", "api", "-n", ns, "-o", "json"],
        |out| addresses(out) == 3,
    );
    let slices = k.eventually(
        &[
            "get",
            "endpointslices",
            "-n",
            ns,
            "-l",
            "kubernetes.io/service-name=api",
            "-o",
            "json",
        ],
        |out| {
            items(out)
                .first()
                .is_some_and(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 3))
        },
    );
    assert_eq!(items(&slices)[0]["ports"][0]["port"], 8080);
    k.ok(&["delete", "service", "api", "-n", ns]);
    k.eventually(
        &["get", "endpoints,endpointslices", "-n", ns, "-o", "name"],
        |out| !out.contains("api"),
    );
    k.ok(&["delete", "deployment", "api", "-n", ns]);
}

/// Quotas, LimitRanges and pod security refuse what they should, in upstream's words.
fn admission(k: &Kubectl, ns: &str) {
    // A namespace of its own: the quota counts every pod in it.
    let ns = &format!("{ns}-admission");
    k.ok(&["create", "namespace", ns]);
    k.ok(&["create", "quota", "pods", "--hard=pods=3", "-n", ns]);
    k.ok(&[
        "create",
        "deployment",
        "capped",
        "--image=nginx",
        "--replicas=4",
        "-n",
        ns,
    ]);
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=capped", "-o", "json"],
        |out| items(out).len() == 3,
    );
    let refused = k.fails(&["run", "fourth", "--image=nginx", "-n", ns]);
    assert!(
        refused.contains("exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3"),
        "{refused}"
    );
    let quota = k.eventually(&["get", "quota", "pods", "-n", ns, "-o", "json"], |out| {
        json(out)["status"]["used"]["pods"] == "3"
    });
    assert_eq!(json(&quota)["status"]["hard"]["pods"], "3");
    let rs = items(&k.ok(&["get", "rs", "-n", ns, "-l", "app=capped", "-o", "json"]));
    let conditions = rs[0]["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ReplicaFailure" && c["reason"] == "FailedCreate"),
        "{conditions:?}"
    );
    k.ok(&["delete", "deployment", "capped", "-n", ns]);
    k.ok(&["delete", "quota", "pods", "-n", ns]);
    k.eventually(&["get", "pods", "-n", ns, "-o", "name"], str::is_empty);

    let restricted = format!("{ns}-restricted");
    k.ok(&["create", "namespace", &restricted]);
    k.ok(&[
        "label",
        "namespace",
        &restricted,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let refused = k.fails(&[
        "run",
        "root",
        "--image=nginx",
        "--privileged",
        "-n",
        &restricted,
    ]);
    assert!(
        refused.contains("violates PodSecurity \"restricted:latest\": privileged"),
        "{refused}"
    );
    let hardened = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hardened"},"spec":{
        "securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
        "containers":[{"name":"c","image":"nginx","securityContext":{
            "allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}"#;
    let run = k.run_with(&["create", "-n", &restricted, "-f", "-"], Some(hardened));
    assert!(run.ok, "{}", run.stderr);
    k.ok(&["delete", "namespace", &restricted, "--wait=false"]);

    let limits = "apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    max: {cpu: \"1\"}
";
    k.run_with(&["apply", "-n", ns, "-f", "-"], Some(limits));
    k.ok(&["run", "defaulted", "--image=nginx", "-n", ns]);
    let pod = json(&k.ok(&["get", "pod", "defaulted", "-n", ns, "-o", "json"]));
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(
        (
            resources["limits"]["cpu"].as_str(),
            resources["requests"]["memory"].as_str()
        ),
        (Some("500m"), Some("128Mi"))
    );
    let big = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},"spec":{"containers":[
        {"name":"c","image":"nginx","resources":{"limits":{"cpu":"2"}}}]}}"#;
    let run = k.run_with(&["create", "-n", ns, "-f", "-"], Some(big));
    assert!(
        run.stderr
            .contains("maximum cpu usage per Container is 1, but limit is 2"),
        "{}",
        run.stderr
    );
    k.ok(&["delete", "namespace", ns, "--wait=false"]);
}

/// The ServiceAccount admission: a pod runs as `default` (even one created just after its
/// namespace, before the namespace controller has made the account), gets its account's
/// token mounted unless the account says not to, and is refused if its account is missing.
fn service_accounts(k: &Kubectl, ns: &str) {
    let ns = &format!("{ns}-accounts");
    k.ok(&["create", "namespace", ns]);
    k.ok(&["run", "first", "--image=nginx", "-n", ns]);
    let pod = json(&k.ok(&["get", "pod", "first", "-n", ns, "-o", "json"]));
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = &pod["spec"]["volumes"][0];
    let name = volume["name"].as_str().expect("a token volume");
    assert!(name.starts_with("kube-api-access-"), "{volume}");
    let sources = volume["projected"]["sources"].to_string();
    for wanted in [
        "serviceAccountToken",
        "kube-root-ca.crt",
        "metadata.namespace",
    ] {
        assert!(sources.contains(wanted), "{wanted} missing: {sources}");
    }
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": name, "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );

    let refused = k.fails(&[
        "run",
        "ghostly",
        "--image=nginx",
        "--overrides={\"spec\":{\"serviceAccountName\":\"ghost\"}}",
        "-n",
        ns,
    ]);
    assert!(
        refused.contains(&format!(
            "pods \"ghostly\" is forbidden: error looking up service account {ns}/ghost: serviceaccount \"ghost\" not found"
        )),
        "{refused}"
    );
    let quiet = "apiVersion: v1
kind: ServiceAccount
metadata: {name: quiet}
automountServiceAccountToken: false
";
    let run = k.run_with(&["create", "-n", ns, "-f", "-"], Some(quiet));
    assert!(run.ok, "{}", run.stderr);
    k.ok(&[
        "run",
        "untokened",
        "--image=nginx",
        "--overrides={\"spec\":{\"serviceAccountName\":\"quiet\"}}",
        "-n",
        ns,
    ]);
    let pod = json(&k.ok(&["get", "pod", "untokened", "-n", ns, "-o", "json"]));
    assert_eq!(pod["spec"]["serviceAccountName"], "quiet");
    assert!(pod["spec"].get("volumes").is_none(), "{pod}");
    k.ok(&["delete", "namespace", ns, "--wait=false"]);
}

/// An autoscaler without metrics: it keeps its target within bounds and says, as upstream
/// does without a metrics server, that it cannot compute a replica count.
fn autoscaler(k: &Kubectl, ns: &str) {
    k.ok(&["create", "deployment", "scaled", "--image=nginx", "-n", ns]);
    k.ok(&[
        "autoscale",
        "deployment",
        "scaled",
        "--min=2",
        "--max=4",
        "--cpu-percent=80",
        "-n",
        ns,
    ]);
    k.eventually(
        &["get", "deployment", "scaled", "-n", ns, "-o", "json"],
        |out| json(out)["spec"]["replicas"] == 2,
    );
    let hpa = k.eventually(&["get", "hpa", "scaled", "-n", ns, "-o", "json"], |out| {
        json(out)["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "ScalingActive"))
    });
    let status = &json(&hpa)["status"];
    assert_eq!(status["currentReplicas"], 2, "{status}");
    let active = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "ScalingActive"))
        .expect("ScalingActive");
    assert_eq!(active["status"], "False");
    assert_eq!(active["reason"], "FailedGetResourceMetric");
    let table = k.ok(&["get", "hpa", "scaled", "-n", ns]);
    assert!(table.contains("Deployment/scaled"), "{table}");
    assert!(table.contains("cpu: <unknown>/80%"), "{table}");
    k.ok(&["delete", "hpa", "scaled", "-n", ns]);
    k.ok(&["delete", "deployment", "scaled", "-n", ns]);
}

/// A legacy token Secret gets a token of its account, valid while the Secret exists.
fn legacy_token(k: &Kubectl, ns: &str) {
    k.ok(&["create", "serviceaccount", "robot", "-n", ns]);
    let secret = format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: robot-token
  namespace: {ns}
  annotations: {{kubernetes.io/service-account.name: robot}}
type: kubernetes.io/service-account-token
"
    );
    k.run_with(&["create", "-f", "-"], Some(&secret));
    let filled = k.eventually(
        &["get", "secret", "robot-token", "-n", ns, "-o", "json"],
        |out| json(out)["data"]["token"].is_string(),
    );
    let filled = json(&filled);
    for key in ["ca.crt", "namespace"] {
        assert!(filled["data"][key].is_string(), "{key} missing: {filled}");
    }
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .decode(filled["data"]["token"].as_str().expect("token"))
        .expect("base64");
    let review = |token: &str| {
        let body = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#
        );
        let run = k.run_with(&["create", "-f", "-", "-o", "json"], Some(&body));
        assert!(run.ok, "{}", run.stderr);
        json(&run.stdout)["status"].clone()
    };
    let token = String::from_utf8(token).expect("a text token");
    let status = review(&token);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        format!("system:serviceaccount:{ns}:robot")
    );
    k.ok(&["delete", "secret", "robot-token", "-n", ns]);
    assert_ne!(
        review(&token)["authenticated"],
        true,
        "the token outlived its Secret"
    );
}

/// StatefulSets, DaemonSets and Jobs.
fn other_workloads(k: &Kubectl, ns: &str) {
    k.run_with(&["apply", "-n", ns, "-f", "-"], Some(STATEFULSET));
    rollout_status(k, ns, "statefulset/db");
    assert_eq!(pod_names(k, ns, "db"), ["db-0", "db-1", "db-2"]);
    let claims = k.ok(&["get", "pvc", "-n", ns, "-o", "name"]);
    for o in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/data-db-{o}")),
            "{claims}"
        );
    }
    let pod = json(&k.ok(&["get", "pod", "db-1", "-n", ns, "-o", "json"]));
    assert_eq!(pod["spec"]["hostname"], "db-1");
    assert_eq!(pod["spec"]["subdomain"], "db");
    k.ok(&["set", "image", "statefulset/db", "db=postgres:17", "-n", ns]);
    rollout_status(k, ns, "statefulset/db");
    assert_eq!(running_images(k, ns, "db"), vec!["postgres:17"; 3]);
    k.ok(&["rollout", "undo", "statefulset/db", "-n", ns]);
    rollout_status(k, ns, "statefulset/db");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=db", "-o", "json"],
        |out| {
            items(out)
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "postgres:16")
        },
    );
    k.ok(&["scale", "statefulset/db", "--replicas=1", "-n", ns]);
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=db", "-o", "name"],
        |out| out.trim() == "pod/db-0",
    );
    assert!(
        k.ok(&["get", "pvc", "-n", ns, "-o", "name"])
            .contains("data-db-2"),
        "claims are kept"
    );

    k.run_with(&["apply", "-n", ns, "-f", "-"], Some(DAEMONSET));
    rollout_status(k, ns, "daemonset/agent");
    let daemons = items(&k.ok(&["get", "pods", "-n", ns, "-l", "app=agent", "-o", "json"]));
    let mut nodes: Vec<&str> = daemons
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["sim-0", "sim-1", "sim-2"], "one daemon per node");
    k.ok(&["set", "image", "daemonset/agent", "agent=agent:2", "-n", ns]);
    rollout_status(k, ns, "daemonset/agent");
    k.eventually(
        &["get", "pods", "-n", ns, "-l", "app=agent", "-o", "json"],
        |out| {
            let pods = items(out);
            pods.len() == 3
                && pods
                    .iter()
                    .all(|p| p["spec"]["containers"][0]["image"] == "agent:2")
        },
    );

    k.ok(&[
        "create",
        "job",
        "hello",
        "--image=busybox",
        "-n",
        ns,
        "--",
        "echo",
        "hi",
    ]);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    k.run_with(&["apply", "-n", ns, "-f", "-"], Some(JOBS));
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    let indexed = json(&k.ok(&["get", "job", "indexed", "-n", ns, "-o", "json"]));
    assert_eq!(indexed["status"]["completedIndexes"], "0-2", "{indexed}");
    assert_eq!(indexed["status"]["succeeded"], 3);
    k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/failing",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    let failing = json(&k.ok(&["get", "job", "failing", "-n", ns, "-o", "json"]));
    assert_eq!(failing["status"]["failed"], 1, "{failing}");
    let failed = failing["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(
        failed
            .iter()
            .any(|c| c["type"] == "Failed" && c["reason"] == "BackoffLimitExceeded")
    );
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
    // Content held by a finalizer of its own holds the namespace, and its status says so.
    let held = "apiVersion: v1
kind: ConfigMap
metadata: {name: held, finalizers: [example.com/hold]}
";
    let run = k.run_with(&["create", "-n", ns, "-f", "-"], Some(held));
    assert!(run.ok, "{}", run.stderr);
    k.ok(&["delete", "namespace", ns, "--wait=false"]);
    // Once the pods are gone (they are deleted gracefully, and their kubelet finishes them),
    // only the held ConfigMap remains.
    let only_held = "Some resources are remaining: configmaps. has 1 resource instances";
    let terminating = k.eventually(&["get", "namespace", ns, "-o", "json"], |out| {
        json(out)["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
                    && c.iter().any(|c| {
                        c["type"] == "NamespaceContentRemaining" && c["message"] == only_held
                    })
            })
    });
    let status = &json(&terminating)["status"];
    assert_eq!(status["phase"], "Terminating");
    let conditions = status["conditions"].as_array().expect("conditions");
    let message = |kind: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == kind)
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        message("NamespaceFinalizersRemaining"),
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(message("NamespaceContentRemaining"), only_held);
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    k.ok(&[
        "wait",
        "--for=delete",
        &format!("namespace/{ns}"),
        "--timeout=60s",
    ]);
    let left = k.run(&["get", "namespace", ns]);
    assert!(!left.ok, "namespace {ns} is still there");
    let pods = items(&k.ok(&["get", "pods", "-A", "-l", "app=doomed", "-o", "json"]));
    assert!(
        pods.iter().all(|p| p["metadata"]["namespace"] != ns),
        "{pods:?}"
    );
}

/// The namespaces of `ticking_cron_jobs`, one per kubectl version.
fn cron_clients(tenant: &Tenant) -> Vec<(Kubectl, String)> {
    KUBECTL_VERSIONS
        .iter()
        .map(|v| (tenant.kubectl(v), format!("workloads-{v}")))
        .collect()
}

/// A CronJob per kubectl version, running every minute, created as soon as the server is up
/// so that the minute `ticking_cron_jobs` waits for passes while the other scenarios run.
fn create_cron_jobs(up: &Up) {
    for (k, ns) in cron_clients(&up.tenant("ticking_cron_jobs")) {
        k.ok(&["create", "namespace", &ns]);
        k.ok(&[
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=* * * * *",
            "-n",
            &ns,
        ]);
    }
}

/// Each CronJob of `create_cron_jobs` made a Job at the minute, which completed. Named to
/// come last (tests start in the order of their names), by when the minute has most likely
/// come.
fn ticking_cron_jobs(tenant: &Tenant) {
    for (k, ns) in cron_clients(tenant) {
        cron_ran(&k, &ns);
    }
}

/// The CronJob made a Job at the minute, which completed.
fn cron_ran(k: &Kubectl, ns: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(75);
    loop {
        let cj = json(&k.ok(&["get", "cronjob", "tick", "-n", ns, "-o", "json"]));
        if cj["status"]["lastSuccessfulTime"].is_string() {
            let jobs = items(&k.ok(&["get", "jobs", "-n", ns, "-o", "json"]));
            let job = jobs
                .iter()
                .find(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick")
                .expect("the CronJob's Job");
            let name = job["metadata"]["name"].as_str().expect("name");
            let minute: i64 = name
                .strip_prefix("tick-")
                .and_then(|m| m.parse().ok())
                .expect("tick-<minute>");
            let scheduled = cj["status"]["lastScheduleTime"]
                .as_str()
                .expect("lastScheduleTime");
            assert!(scheduled.ends_with(":00Z"), "{scheduled}");
            assert!(minute > 29_000_000, "{name}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CronJob never ran: {cj}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
