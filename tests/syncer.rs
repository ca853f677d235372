//! The syncer end to end: `vcluster up --host local=<kubeconfig>` against a stand-in host
//! cluster (`vcluster host --name local --simulated-nodes 2`, a process of its own), driven by
//! real kubectl on both sides, on the embedded store and on etcd. A tenant's Deployment
//! runs as marked pods in the host namespace of its namespace and comes back Running on
//! mirrored nodes; scaling and deleting reach the host; a host pod deleted behind the
//! syncer's back is replaced through the tenant's own controllers; a pod the host policy
//! refuses never reaches the host; a deleted namespace leaves nothing there; the ConfigMaps
//! and Secrets a pod uses go down beside it, and only while it uses them; Services go down
//! with the tenant's cluster IP and node port where the host has them free, and say which
//! address they have on the host.

use serde_json::Value;
use vcluster_testkit::clients::Kubectl;
use vcluster_tests::{StoreKind, Tenant, Up, directly, items, vcluster_bin, with_each_kubectl};

vcluster_tests::scenarios! {
    host_nodes: 2;
    with_each_kubectl: [a_deployment_runs_on_the_host],
    directly: [
        a_host_pod_deleted_behind_the_syncers_back_is_replaced,
        a_deleted_pod_stops_within_its_grace_on_both_sides,
        a_host_pod_holds_the_tenants_token_and_no_host_credential,
        host_namespaces_admit_only_the_tenants_pods_and_keep_its_limits,
        a_pod_the_host_may_not_run_stays_in_the_tenant,
        a_deleted_namespace_leaves_nothing_on_the_host,
        configmaps_and_secrets_go_down_while_a_pod_uses_them,
        services_go_down_with_the_tenants_addresses_where_free,
    ],
}

/// The arguments that select, on the host, the pods of tenant namespace `ns` (found by
/// the markers, as the host namespace's name is shortened past 63 characters).
fn host_pods_of(tenant: &Tenant, ns: &str) -> Vec<String> {
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace={ns}",
        tenant.name
    );
    ["get", "pods", "-A", "-l", &selector]
        .map(str::to_owned)
        .to_vec()
}

/// Runs kubectl with `args` and then `more`.
fn with<'a>(args: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// The pods of `ns` labelled `app=<app>`, not being deleted.
fn pods(k: &Kubectl, ns: &str, app: &str) -> Vec<Value> {
    let label = format!("app={app}");
    items(&k.ok(&["get", "pods", "-n", ns, "-l", &label, "-o", "json"]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// Every object of the tenant's on the host, by the tenant marker: namespaces, pods and
/// service accounts, as `kind/name` lines.
fn host_objects(tenant: &Tenant, h: &Kubectl) -> String {
    let selector = format!("vcluster.io/tenant={}", tenant.name);
    h.ok(&[
        "get",
        "namespaces,pods,serviceaccounts",
        "-A",
        "-l",
        &selector,
        "-o",
        "name",
    ])
}

fn a_deployment_runs_on_the_host(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let h = tenant.host_kubectl(version);
    let ns = format!("web-{version}");
    let on_host_args = host_pods_of(tenant, &ns);
    k.ok(&["create", "namespace", &ns]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        &ns,
        "--image=nginx",
        "--replicas=3",
    ]);
    k.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=60s",
    ]);

    let in_tenant = pods(&k, &ns, "web");
    assert_eq!(in_tenant.len(), 3, "{in_tenant:#?}");
    let on_host = items(&h.ok(&with(&on_host_args, &["-o", "json"])));
    assert_eq!(on_host.len(), 3, "{on_host:#?}");
    for pod in &in_tenant {
        let name = pod["metadata"]["name"].as_str().expect("a name");
        assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
        let node = pod["spec"]["nodeName"].as_str().expect("bound");
        let host_node = node
            .strip_suffix(".local")
            .expect("a node mirrored from local");
        let host = on_host
            .iter()
            .find(|h| h["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no host pod {name}"));
        let labels = &host["metadata"]["labels"];
        assert_eq!(labels["vcluster.io/managed-by"], "vcluster");
        assert_eq!(labels["vcluster.io/tenant"], tenant.name.as_str());
        assert_eq!(labels["vcluster.io/namespace"], ns.as_str());
        assert_eq!(labels["app"], "web");
        let annotations = &host["metadata"]["annotations"];
        assert_eq!(
            annotations["vcluster.io/object-uid"],
            pod["metadata"]["uid"]
        );
        assert_eq!(annotations["vcluster.io/object-kind"], "v1/Pod");
        // No host credential: the workload account, no token mounted.
        assert_eq!(host["spec"]["serviceAccountName"], "vc-workload");
        assert_eq!(host["spec"]["automountServiceAccountToken"], false);
        assert_eq!(host["spec"]["nodeName"], host_node);
        // The status the tenant sees is the host pod's.
        assert_eq!(pod["status"]["podIP"], host["status"]["podIP"]);
        assert!(pod["status"]["podIP"].is_string(), "{pod:#}");
    }

    // What the host's scheduler and kubelet said of a host pod, the tenant's kubectl tells
    // of the tenant pod, in the tenant's names.
    let first = &in_tenant[0];
    let name = first["metadata"]["name"].as_str().expect("a name");
    let node = first["spec"]["nodeName"].as_str().expect("bound");
    let scheduled = k.eventually(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            &format!("involvedObject.name={name},reason=Scheduled"),
            "-o",
            "json",
        ],
        |out| !items(out).is_empty(),
    );
    let scheduled = &items(&scheduled)[0];
    assert_eq!(
        scheduled["message"],
        format!("Successfully assigned {ns}/{name} to {node}").as_str(),
        "{scheduled:#}"
    );
    assert_eq!(scheduled["involvedObject"]["uid"], first["metadata"]["uid"]);
    let described = k.eventually(&["describe", "pod", name, "-n", &ns], |out| {
        out.contains("Started container nginx")
    });
    assert!(described.contains("kubelet"), "{described}");

    // The nodes the tenant sees are the host nodes its pods run on.
    let nodes = items(&k.ok(&[
        "get",
        "nodes",
        "-l",
        "vcluster.io/mirrored-node=true",
        "-o",
        "json",
    ]));
    assert!(!nodes.is_empty());
    for node in &nodes {
        assert_eq!(
            node["metadata"]["labels"]["vcluster.io/host-cluster"],
            "local"
        );
        let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        assert!(ready, "{node:#}");
        assert!(
            in_tenant
                .iter()
                .any(|p| p["spec"]["nodeName"] == node["metadata"]["name"]),
            "a node no pod runs on: {node:#}"
        );
    }

    // Scaling down reaches the host.
    k.ok(&["scale", "deployment/web", "-n", &ns, "--replicas=1"]);
    h.eventually(&with(&on_host_args, &["-o", "name"]), |out| {
        out.lines().count() == 1
    });
    // Deleting the Deployment empties the host namespace, and the nodes go.
    k.ok(&["delete", "deployment/web", "-n", &ns]);
    h.eventually(&with(&on_host_args, &["-o", "name"]), |out| {
        out.trim().is_empty()
    });
    k.eventually(
        &[
            "get",
            "nodes",
            "-l",
            "vcluster.io/mirrored-node=true",
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );
}

fn a_host_pod_deleted_behind_the_syncers_back_is_replaced(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    let on_host_args = host_pods_of(tenant, "default");
    k.ok(&["create", "deployment", "solo", "--image=nginx"]);
    k.ok(&["rollout", "status", "deployment/solo", "--timeout=60s"]);
    let first = pods(&k, "default", "solo");
    assert_eq!(first.len(), 1);
    let name = first[0]["metadata"]["name"].as_str().expect("a name");
    let uid = first[0]["metadata"]["uid"].clone();

    let host = items(&h.ok(&with(&on_host_args, &["-o", "json"])));
    assert_eq!(host.len(), 1, "{host:#?}");
    let host_ns = host[0]["metadata"]["namespace"]
        .as_str()
        .expect("a namespace");
    h.ok(&["delete", "pod", name, "-n", host_ns, "--wait=false"]);

    // The tenant pod whose host pod vanished is deleted; its ReplicaSet makes another,
    // which runs on the host in its place: one host pod, the new tenant pod's.
    let replaced = k.eventually(&["get", "pods", "-l", "app=solo", "-o", "json"], |out| {
        let now = items(out);
        now.len() == 1 && now[0]["metadata"]["uid"] != uid && now[0]["status"]["phase"] == "Running"
    });
    let replacement = &items(&replaced)[0];
    h.eventually(&with(&on_host_args, &["-o", "json"]), |out| {
        let host = items(out);
        host.len() == 1
            && host[0]["metadata"]["annotations"]["vcluster.io/object-uid"]
                == replacement["metadata"]["uid"]
    });
}

/// A tenant pod deleted with a grace period is `Terminating` in the tenant and on the host
/// while its host pod stops (the simulated kubelet takes the 3 s the pod asks for), and
/// both are gone once the host's kubelet has finished it.
fn a_deleted_pod_stops_within_its_grace_on_both_sides(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    let on_host_args = host_pods_of(tenant, "default");
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"slow","labels":{"app":"slow"},
        "annotations":{"nodesim.vcluster.io/stop-seconds":"3"}},
        "spec":{"terminationGracePeriodSeconds":45,"containers":[{"name":"c","image":"nginx"}]}}"#;
    let created = k.run_with(&["create", "-f", "-"], Some(pod));
    assert!(created.ok, "{}", created.stderr);
    k.eventually(
        &["get", "pod", "slow", "-o", "jsonpath={.status.phase}"],
        |p| p == "Running",
    );
    k.ok(&["delete", "pod", "slow", "--grace-period=20", "--wait=false"]);
    let marked: Value =
        serde_json::from_str(&k.ok(&["get", "pod", "slow", "-o", "json"])).expect("json");
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 20,
        "{marked:#}"
    );
    // The host pod is deleted with the tenant's grace, and stops within it.
    let host = h.eventually(&with(&on_host_args, &["-o", "json"]), |out| {
        items(out)
            .first()
            .is_some_and(|p| p["metadata"]["deletionGracePeriodSeconds"] == 20)
    });
    assert_eq!(items(&host).len(), 1, "{host}");
    // While it stops there, the tenant pod waits for it.
    let waiting: Value =
        serde_json::from_str(&k.ok(&["get", "pod", "slow", "-o", "json"])).expect("json");
    assert_eq!(waiting["metadata"]["uid"], marked["metadata"]["uid"]);
    h.eventually(&with(&on_host_args, &["-o", "name"]), |out| {
        out.trim().is_empty()
    });
    let gone = k.eventually(&["get", "pods", "-l", "app=slow", "-o", "name"], |out| {
        out.trim().is_empty()
    });
    assert!(gone.trim().is_empty());
}

/// A host pod's projected token is the tenant's: its token Secret, owned by the host pod,
/// holds a token that the tenant API takes as the tenant pod's service account and the
/// host API refuses, with the tenant's CA and namespace. It goes with the pod, and the
/// token stops working.
fn a_host_pod_holds_the_tenants_token_and_no_host_credential(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    k.ok(&["create", "serviceaccount", "robot"]);
    k.ok(&[
        "run",
        "agent",
        "--image=nginx",
        r#"--overrides={"spec":{"serviceAccountName":"robot"}}"#,
    ]);
    k.eventually(
        &["get", "pod", "agent", "-o", "jsonpath={.status.phase}"],
        |p| p == "Running",
    );
    let tenant_pod = vcluster_tests::json(&k.ok(&["get", "pod", "agent", "-o", "json"]));
    let host_pod = items(&h.ok(&with(&host_pods_of(tenant, "default"), &["-o", "json"])))
        .into_iter()
        .find(|p| p["metadata"]["name"] == "agent")
        .expect("the host pod");
    let host_ns = host_pod["metadata"]["namespace"]
        .as_str()
        .expect("a namespace");
    let spec = host_pod["spec"].to_string();
    assert!(
        !spec.contains("serviceAccountToken"),
        "a host token: {spec}"
    );
    let volume = tenant_pod["spec"]["volumes"][0]["name"]
        .as_str()
        .expect("the tenant's token volume");
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    assert_eq!(
        host_pod["spec"]["volumes"][0]["projected"]["sources"][0]["secret"]["name"],
        "agent-sa-token"
    );

    let secret = vcluster_tests::json(&h.eventually(
        &[
            "get",
            "secret",
            "agent-sa-token",
            "-n",
            host_ns,
            "-o",
            "json",
        ],
        |_| true,
    ));
    assert_eq!(
        secret["metadata"]["labels"]["vcluster.io/tenant"],
        tenant.name.as_str()
    );
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"], host_pod["metadata"]["uid"],
        "owned by the host pod: {secret:#}"
    );
    let value = |key: &str| -> String {
        use base64::Engine;
        let encoded = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {secret:#}"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        String::from_utf8(decoded).expect("text")
    };
    let token = value(&format!("{volume}.token.0"));
    let ca = k.ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert_eq!(value("ca.crt").trim(), ca.trim(), "the tenant's CA");
    assert_eq!(value("namespace"), "default", "the tenant's namespace");

    let (_tenant_scratch, as_pod) =
        vcluster_tests::kubectl_with_token("v36", tenant.kubeconfig(), &token);
    assert!(
        as_pod
            .ok(&["auth", "whoami"])
            .contains("system:serviceaccount:default:robot"),
        "the tenant takes the token as the pod's account"
    );
    let (_host_scratch, on_host) =
        vcluster_tests::kubectl_with_token("v36", tenant.host_kubeconfig(), &token);
    let refused = on_host.fails(&["auth", "whoami"]);
    assert!(
        refused.contains("Unauthorized"),
        "the host took it: {refused}"
    );

    // Gone with the pod, on both sides.
    k.ok(&["delete", "pod", "agent"]);
    h.eventually(
        &[
            "get",
            "secrets",
            "-n",
            host_ns,
            "--field-selector=metadata.name=agent-sa-token",
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );
    let expired = as_pod.fails(&["auth", "whoami"]);
    assert!(
        expired.contains("Unauthorized"),
        "the token outlived its pod: {expired}"
    );
}

/// A host namespace admits traffic only from the same tenant's host namespaces (its
/// NetworkPolicy, for the host's network plugin to enforce), and the tenant's quotas and
/// limit ranges hold there too: copied down, kept equal, gone with the tenant's.
fn host_namespaces_admit_only_the_tenants_pods_and_keep_its_limits(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    let ns = "fenced";
    k.ok(&["create", "namespace", ns]);
    k.ok(&[
        "create",
        "quota",
        "small",
        "-n",
        ns,
        "--hard=pods=5,requests.cpu=2",
    ]);
    let limits = r#"{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"defaults"},
        "spec":{"limits":[{"type":"Container","default":{"cpu":"200m"},"defaultRequest":{"cpu":"100m"}}]}}"#;
    let created = k.run_with(&["create", "-n", ns, "-f", "-"], Some(limits));
    assert!(created.ok, "{}", created.stderr);
    k.ok(&["run", "guarded", "-n", ns, "--image=nginx"]);
    k.ok(&[
        "wait",
        "pod/guarded",
        "-n",
        ns,
        "--for=condition=Ready",
        "--timeout=60s",
    ]);

    // Found by its markers: its name is shortened past 63 characters.
    let host_ns = h.ok(&[
        "get",
        "namespaces",
        "-l",
        &format!(
            "vcluster.io/tenant={},vcluster.io/namespace={ns}",
            tenant.name
        ),
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let policy = vcluster_tests::json(&h.ok(&[
        "get",
        "networkpolicy",
        "vc-tenant-isolation",
        "-n",
        &host_ns,
        "-o",
        "json",
    ]));
    assert_eq!(
        policy["spec"]["podSelector"],
        serde_json::json!({}),
        "{policy:#}"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    assert_eq!(
        policy["spec"]["ingress"],
        serde_json::json!([{"from": [{"namespaceSelector": {"matchLabels": {
            "vcluster.io/managed-by": "vcluster", "vcluster.io/tenant": tenant.name}}}]}]),
        "{policy:#}"
    );
    // The selector selects this tenant's host namespaces, and only those.
    let selected = h.ok(&[
        "get",
        "namespaces",
        "-l",
        &format!(
            "vcluster.io/managed-by=vcluster,vcluster.io/tenant={}",
            tenant.name
        ),
        "-o",
        "name",
    ]);
    assert!(
        selected.contains(&format!("namespace/{host_ns}")),
        "{selected}"
    );
    assert!(!selected.contains("kube-system"), "{selected}");

    let copied = |kind: &str, name: &str| -> Value {
        let args = ["get", kind, name, "-n", &host_ns, "-o", "json"];
        vcluster_tests::json(&h.eventually(&args, |_| true))
    };
    let quota = copied("resourcequota", "small");
    assert_eq!(quota["spec"]["hard"]["pods"], "5", "{quota:#}");
    assert_eq!(
        quota["metadata"]["labels"]["vcluster.io/tenant"],
        tenant.name.as_str()
    );
    let range = copied("limitrange", "defaults");
    assert_eq!(
        range["spec"]["limits"][0]["default"]["cpu"], "200m",
        "{range:#}"
    );

    k.ok(&[
        "patch",
        "quota",
        "small",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"7"}}}"#,
    ]);
    h.eventually(
        &[
            "get",
            "resourcequota",
            "small",
            "-n",
            &host_ns,
            "-o",
            "jsonpath={.spec.hard.pods}",
        ],
        |out| out == "7",
    );
    k.ok(&["delete", "quota", "small", "-n", ns]);
    k.ok(&["delete", "limitrange", "defaults", "-n", ns]);
    h.eventually(
        &[
            "get",
            "resourcequotas,limitranges",
            "-n",
            &host_ns,
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );
}

fn a_pod_the_host_may_not_run_stays_in_the_tenant(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    k.ok(&[
        "run",
        "bad",
        "--image=busybox",
        r#"--overrides={"spec":{"hostNetwork":true}}"#,
    ]);
    let refused = k.eventually(&["get", "pod", "bad", "-o", "json"], |out| {
        serde_json::from_str::<Value>(out).is_ok_and(|pod| {
            pod["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "HostPolicy"
                })
            })
        })
    });
    let pod: Value = serde_json::from_str(&refused).expect("a pod");
    assert_eq!(pod["status"]["phase"], "Pending");
    let message = pod["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("hostNetwork"), "{message}");
    // What `kubectl describe pod` shows: a core/v1 Event about it.
    k.eventually(&["get", "events", "-o", "json"], |out| {
        items(out).iter().any(|e| {
            e["reason"] == "HostPolicy"
                && e["involvedObject"]["name"] == "bad"
                && e["type"] == "Warning"
        })
    });
    let described = k.ok(&["describe", "pod", "bad"]);
    assert!(described.contains("HostPolicy"), "{described}");
    // A pod that runs shows the syncer has seen everything before it; the refused one never
    // reached the host.
    k.ok(&["run", "good", "--image=busybox"]);
    k.ok(&["wait", "pod/good", "--for=condition=Ready", "--timeout=60s"]);
    let on_host = host_objects(tenant, &h);
    assert!(on_host.contains("pod/good"), "{on_host}");
    assert!(!on_host.contains("pod/bad"), "{on_host}");
}

fn a_deleted_namespace_leaves_nothing_on_the_host(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    k.ok(&["create", "namespace", "gone"]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "gone",
        "--image=nginx",
        "--replicas=2",
    ]);
    k.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "gone",
        "--timeout=60s",
    ]);
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=gone",
        tenant.name
    );
    let namespaces = h.ok(&["get", "namespaces", "-l", &selector, "-o", "name"]);
    assert_eq!(namespaces.lines().count(), 1, "{namespaces}");
    let before = host_objects(tenant, &h);
    assert!(before.contains("serviceaccount/vc-workload"), "{before}");
    assert_eq!(before.matches("pod/").count(), 2, "{before}");

    k.ok(&["delete", "namespace", "gone", "--timeout=60s"]);
    h.eventually(
        &[
            "get",
            "namespaces,pods,serviceaccounts",
            "-A",
            "-l",
            &format!("vcluster.io/tenant={}", tenant.name),
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );
}

fn configmaps_and_secrets_go_down_while_a_pod_uses_them(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    k.ok(&[
        "create",
        "configmap",
        "conf",
        "--from-literal=greeting=hello",
    ]);
    k.ok(&["create", "configmap", "unused", "--from-literal=x=y"]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "app", "image": "busybox",
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}]}],
          "volumes": [{"name": "conf", "configMap": {"name": "conf"}}]}}"#;
    let created = k.run_with(&["create", "-f", "-"], Some(pod));
    assert!(created.ok, "{}", created.stderr);
    k.ok(&["wait", "pod/user", "--for=condition=Ready", "--timeout=60s"]);

    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=default",
        tenant.name
    );
    let copies = |kind: &str| items(&h.ok(&["get", kind, "-A", "-l", &selector, "-o", "json"]));
    let names = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    // The used ones are there with their content; the unused one and the tenant's own
    // kube-root-ca.crt are not.
    h.eventually(
        &[
            "get",
            "configmaps,secrets",
            "-A",
            "-l",
            &selector,
            "-o",
            "name",
        ],
        |out| out.contains("configmap/conf") && out.contains("secret/creds"),
    );
    let config_maps = copies("configmaps");
    assert_eq!(names(&config_maps), ["conf"]);
    assert_eq!(config_maps[0]["data"]["greeting"], "hello");
    // Beside the copy, the pod's token Secret (the syncer's own, not a copy).
    let secrets = copies("secrets");
    assert_eq!(names(&secrets), ["creds", "user-sa-token"]);
    let tenant_secret: Value =
        serde_json::from_str(&k.ok(&["get", "secret", "creds", "-o", "json"])).expect("json");
    assert_eq!(secrets[0]["data"], tenant_secret["data"]);

    // A change in the tenant reaches the copy.
    k.ok(&[
        "patch",
        "configmap",
        "conf",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"bye"}}"#,
    ]);
    h.eventually(
        &["get", "configmaps", "-A", "-l", &selector, "-o", "json"],
        |out| {
            items(out)
                .first()
                .is_some_and(|c| c["data"]["greeting"] == "bye")
        },
    );

    // Once no pod uses them, the copies go.
    k.ok(&["delete", "pod", "user"]);
    h.eventually(
        &[
            "get",
            "configmaps,secrets",
            "-A",
            "-l",
            &selector,
            "-o",
            "name",
        ],
        |out| out.trim().is_empty(),
    );
}

fn services_go_down_with_the_tenants_addresses_where_free(tenant: &Tenant) {
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    // An address no other tenant of this host asks for.
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "--tcp=80:8080",
        "--node-port=30777",
    ]);
    k.ok(&[
        "patch",
        "service",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"app":"web"}}}"#,
    ]);
    let tenant_service: Value =
        serde_json::from_str(&k.ok(&["get", "service", "web", "-o", "json"])).expect("json");
    let selector = format!(
        "vcluster.io/tenant={},vcluster.io/namespace=default",
        tenant.name
    );
    let copy = h.eventually(
        &["get", "services", "-A", "-l", &selector, "-o", "json"],
        |out| {
            items(out)
                .first()
                .is_some_and(|s| s["spec"]["selector"]["app"] == "web")
        },
    );
    let copy = &items(&copy)[0];
    assert_eq!(copy["metadata"]["name"], "web");
    assert_eq!(copy["spec"]["type"], "NodePort");
    assert_eq!(copy["spec"]["ports"][0]["port"], 80);
    assert_eq!(copy["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(copy["spec"]["ports"][0]["nodePort"], 30777);
    assert_eq!(
        copy["spec"]["clusterIP"],
        tenant_service["spec"]["clusterIP"]
    );
    // The tenant says what the address is on the host.
    let wanted = format!(
        "local={}",
        copy["spec"]["clusterIP"].as_str().expect("an IP")
    );
    k.eventually(&["get", "service", "web", "-o", "json"], |out| {
        serde_json::from_str::<Value>(out).is_ok_and(|s| {
            s["metadata"]["annotations"]["vcluster.io/host-cluster-ips"] == wanted.as_str()
        })
    });
    // The host computes the copy's endpoints from the host pods.
    let host_ns = copy["metadata"]["namespace"].as_str().expect("a namespace");
    h.eventually(
        &["get", "endpoints", "web", "-n", host_ns, "-o", "json"],
        |out| {
            serde_json::from_str::<Value>(out).is_ok_and(|e| {
                e["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
            })
        },
    );

    // A pod made now gets the Service's variables with its address on the host, as a
    // kubelet gives them (the host's own Services' are off: `enableServiceLinks: false`).
    k.ok(&["run", "client", "--image=busybox"]);
    k.ok(&[
        "wait",
        "pod/client",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let client =
        vcluster_tests::json(&h.ok(&["get", "pod", "client", "-n", host_ns, "-o", "json"]));
    assert_eq!(client["spec"]["enableServiceLinks"], false);
    let env = &client["spec"]["containers"][0]["env"];
    let var = |name: &str| {
        env.as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap_or_else(|| panic!("no {name}: {env:#}"))
    };
    let host_ip = copy["spec"]["clusterIP"].as_str().expect("an IP");
    assert_eq!(var("WEB_SERVICE_HOST"), host_ip);
    assert_eq!(var("WEB_SERVICE_PORT"), "80");
    assert_eq!(var("WEB_PORT"), format!("tcp://{host_ip}:80").as_str());

    // A change reaches the copy; a deleted Service takes it along.
    k.ok(&["label", "service", "web", "tier=front"]);
    h.eventually(
        &["get", "services", "-A", "-l", &selector, "-o", "json"],
        |out| {
            items(out)
                .first()
                .is_some_and(|s| s["metadata"]["labels"]["tier"] == "front")
        },
    );
    k.ok(&["delete", "service", "web"]);
    h.eventually(
        &["get", "services", "-A", "-l", &selector, "-o", "name"],
        |out| out.trim().is_empty(),
    );
}

/// `vcluster syncer` on its own, between a `vcluster up` without `--host` and a host
/// cluster: the tenant's pod runs on the host; SIGTERM ends it with 0.
#[test]
fn the_syncer_runs_on_its_own() {
    let up = Up::start(StoreKind::Embedded, &["alone"], 0);
    let host = Up::host("solo", 1);
    let tenant = up.tenant("alone");
    let mut command = vcluster_testkit::tether::command(vcluster_bin(), None);
    command
        .arg("syncer")
        .arg("--tenant")
        .arg(format!("alone={}", tenant.kubeconfig().display()))
        .arg("--host")
        .arg(format!("solo={}", host.kubeconfig().display()))
        .env("VCLUSTER_LOG", "warn");
    let mut syncer =
        vcluster_testkit::tether::Tethered::spawn(&mut command).expect("start vcluster syncer");

    let k = tenant.kubectl("v36");
    k.ok(&["run", "one", "--image=busybox"]);
    k.ok(&["wait", "pod/one", "--for=condition=Ready", "--timeout=60s"]);
    let pod: Value =
        serde_json::from_str(&k.ok(&["get", "pod", "one", "-o", "json"])).expect("json");
    assert_eq!(pod["spec"]["nodeName"], "sim-0.solo");
    let h = vcluster_testkit::clients::Kubectl::new("v36", host.kubeconfig());
    let on_host = h.ok(&[
        "get",
        "pods",
        "-A",
        "-l",
        "vcluster.io/tenant=alone",
        "-o",
        "name",
    ]);
    assert_eq!(on_host.trim(), "pod/one");

    let pid = syncer.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = syncer.wait().expect("the syncer ends");
    assert!(status.success(), "vcluster syncer exited with {status}");
}

/// `vcluster up` as the README runs it (no `--host`): its pods run in the embedded host
/// cluster `local`, another API server of the same process with its own store and
/// kubeconfig (`<data-dir>/hosts/local/kubeconfig`) and the simulated nodes; the tenant has
/// none of its own, only the nodes mirrored from the host.
#[test]
fn vcluster_up_runs_pods_in_its_embedded_host_cluster() {
    let up = Up::start_embedded(StoreKind::Embedded, &["newcomer"], 2);
    let tenant = up.tenant("newcomer");
    let k = tenant.kubectl("v36");
    let h = tenant.host_kubectl("v36");
    let host_nodes = h.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(host_nodes.lines().count(), 2, "{host_nodes}");
    assert_eq!(
        k.ok(&["get", "nodes", "-o", "name"]).trim(),
        "",
        "no tenant nodes"
    );

    k.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=nginx",
        "--replicas=2",
    ]);
    k.ok(&["rollout", "status", "deployment/hello", "--timeout=60s"]);
    for pod in pods(&k, "default", "hello") {
        let node = pod["spec"]["nodeName"].as_str().expect("bound");
        assert!(
            node.ends_with(".local"),
            "not a node of the embedded host: {node}"
        );
    }
    let on_host = h.ok(&[
        "get",
        "pods",
        "-n",
        "vc-newcomer--default",
        "-l",
        "app=hello",
        "-o",
        "name",
    ]);
    assert_eq!(on_host.lines().count(), 2, "{on_host}");
    // The host is a cluster apart: the tenant's objects are not in it, nor its own in the
    // tenant.
    let deployments = h.ok(&["get", "deployments", "-A", "-o", "name"]);
    assert!(deployments.trim().is_empty(), "{deployments}");
    let namespaces = k.ok(&["get", "namespaces", "-o", "name"]);
    assert!(!namespaces.contains("vc-newcomer"), "{namespaces}");
}
