//! `kubectl logs`, `exec`, `attach` and `port-forward` reach a pod's node as kube-apiserver
//! does: the pod and its container are checked, the node's kubelet is located and dialled,
//! and a kubelet that cannot be reached is answered in upstream's words (not a 404 for
//! the route). Real kubectl 1.33 and 1.36, a node whose kubelet port is closed.

mod common;

use common::Served;
use vcluster_testkit::clients::Kubectl;

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[test]
fn kubelet_endpoints_answer_as_upstream_when_the_kubelet_is_unreachable() {
    let (served, opened) = Served::start(&["t"]);
    let path = served.admin_kubeconfig(&opened[0]);
    let port = closed_port();
    let objects = format!(
        "apiVersion: v1
kind: Node
metadata: {{name: n1}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}]
  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default}}
spec:
  nodeName: n1
  containers: [{{name: web, image: nginx}}, {{name: side, image: busybox}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: pending, namespace: default}}
spec:
  containers: [{{name: web, image: nginx}}]
"
    );
    let admin = Kubectl::new("v36", &path);
    let created = admin.run_with(&["create", "-f", "-"], Some(&objects));
    assert!(created.ok, "{}", created.stderr);
    // The node's status is written through its status subresource.
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
    );
    admin.ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    let refused = format!("dial tcp 127.0.0.1:{port}: connect: connection refused");
    for version in ["v33", "v36"] {
        let k = Kubectl::new(version, &path);
        let logs = k.run(&["logs", "web", "-c", "web"]);
        assert!(!logs.ok);
        let expected = format!(
            "Error from server: Get \"https://127.0.0.1:{port}/containerLogs/default/web/web\": {refused}"
        );
        assert!(
            logs.stderr.contains(&expected),
            "{version}: {}",
            logs.stderr
        );
        let exec = k.run(&["exec", "web", "-c", "web", "--", "echo", "hi"]);
        assert!(!exec.ok);
        assert!(
            exec.stderr
                .contains(&format!("error dialing backend: {refused}")),
            "{version}: {}",
            exec.stderr
        );
        let wrong = k.run(&["logs", "web", "-c", "db"]);
        assert!(
            wrong
                .stderr
                .contains("container db is not valid for pod web"),
            "{version}: {}",
            wrong.stderr
        );
        let pending = k.run(&["logs", "pending"]);
        assert!(
            pending
                .stderr
                .contains("pod pending does not have a host assigned"),
            "{version}: {}",
            pending.stderr
        );
        let missing = k.run(&["logs", "nothere"]);
        assert!(
            missing.stderr.contains("NotFound"),
            "{version}: {}",
            missing.stderr
        );
    }
    let raw = admin.run(&["get", "--raw", "/api/v1/namespaces/default/pods/web/log"]);
    assert!(
        raw.stderr
            .contains("a container name must be specified for pod web, choose one of: [web side]"),
        "{}",
        raw.stderr
    );
    let discovery = admin.ok(&["get", "--raw", "/api/v1"]);
    for sub in ["pods/log", "pods/exec", "pods/attach", "pods/portforward"] {
        assert!(
            discovery.contains(&format!("\"{sub}\"")),
            "{sub} not in discovery"
        );
    }
}
