//! A DELETE answers as kube-apiserver's registry for the resource does: the deleted object
//! for the resources whose stores return it (pods, services, service accounts, ...), a
//! `Status` for the others, and the object itself while finalizers hold it. Typed clients
//! (client-go, the Python client) decode the answer as that type.

mod common;

use common::Served;
use serde_json::Value;
use vcluster_testkit::clients::Kubectl;

const OBJECTS: &str = "apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: plain, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: default, finalizers: [example.com/hold]}
";

#[test]
fn deletes_answer_with_the_object_where_upstream_does() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let created = k.run_with(&["create", "-f", "-"], Some(OBJECTS));
    assert!(created.ok, "{}", created.stderr);
    let delete = |path: &str| -> Value {
        serde_json::from_str(&k.ok(&["delete", "--raw", path])).expect("json")
    };
    let pod = delete("/api/v1/namespaces/default/pods/web");
    assert_eq!(
        (pod["kind"].as_str(), pod["metadata"]["name"].as_str()),
        (Some("Pod"), Some("web")),
        "{pod}"
    );
    let account = delete("/api/v1/namespaces/default/serviceaccounts/robot");
    assert_eq!(account["kind"], "ServiceAccount", "{account}");
    let raw = k.ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/configmaps/plain",
    ]);
    assert!(
        raw.starts_with(r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"plain","kind":"configmaps","uid":""#),
        "not kube-apiserver's bytes: {raw}"
    );
    let status: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(
        (status["kind"].as_str(), status["status"].as_str()),
        (Some("Status"), Some("Success")),
        "{status}"
    );
    assert_eq!(status["details"]["name"], "plain");
    let held = delete("/api/v1/namespaces/default/configmaps/held");
    assert_eq!(held["kind"], "ConfigMap", "{held}");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
}

/// A pod bound to a node is deleted gracefully, as kube-apiserver deletes it: marked for
/// its grace period (the request's, else its own), which a later DELETE may only shorten,
/// until a grace of 0 (its kubelet's, or `--force`) deletes it. No kubelet runs here, so
/// nothing ends the grace behind the test's back. A pod on no node goes at once.
#[test]
fn bound_pods_are_deleted_gracefully() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let pods = "apiVersion: v1
kind: Pod
metadata: {name: bound, namespace: default}
spec: {nodeName: somewhere, terminationGracePeriodSeconds: 40, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: unbound, namespace: default}
spec: {containers: [{name: c, image: nginx}]}
";
    let created = k.run_with(&["create", "-f", "-"], Some(pods));
    assert!(created.ok, "{}", created.stderr);
    k.ok(&[
        "patch",
        "pod",
        "bound",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    let get = |name: &str| -> Value {
        serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).expect("json")
    };
    let before = get("bound");

    let answer: Value =
        serde_json::from_str(&k.ok(&["delete", "--raw", "/api/v1/namespaces/default/pods/bound"]))
            .expect("json");
    assert_eq!(
        answer["metadata"]["deletionGracePeriodSeconds"], 40,
        "{answer}"
    );
    let marked = get("bound");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 40);
    let at = |pod: &Value| -> jiff::Timestamp {
        pod["metadata"]["deletionTimestamp"]
            .as_str()
            .expect("a deletionTimestamp")
            .parse()
            .expect("a time")
    };
    let created_at: jiff::Timestamp = before["metadata"]["creationTimestamp"]
        .as_str()
        .expect("created")
        .parse()
        .expect("a time");
    let ahead = at(&marked).duration_since(created_at);
    assert!(
        ahead >= jiff::SignedDuration::from_secs(39)
            && ahead <= jiff::SignedDuration::from_secs(100),
        "the deletion is set {ahead:?} after creation: {marked}"
    );
    assert_ne!(
        marked["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "the mark is a write that watchers see"
    );

    // A longer grace changes nothing; a shorter one moves the deadline back.
    k.ok(&[
        "delete",
        "pod",
        "bound",
        "--grace-period=100",
        "--wait=false",
    ]);
    assert_eq!(get("bound")["metadata"], marked["metadata"]);
    k.ok(&[
        "delete",
        "pod",
        "bound",
        "--grace-period=10",
        "--wait=false",
    ]);
    let shortened = get("bound");
    assert_eq!(shortened["metadata"]["deletionGracePeriodSeconds"], 10);
    assert_eq!(
        at(&marked).duration_since(at(&shortened)),
        jiff::SignedDuration::from_secs(30),
        "{shortened}"
    );

    // A grace of 0 with the uid of another pod is refused; with none, the pod is gone.
    let raw = |options: &str| {
        k.run_with(
            &[
                "delete",
                "--raw",
                "/api/v1/namespaces/default/pods/bound",
                "-f",
                "-",
            ],
            Some(options),
        )
    };
    let wrong = raw(
        r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"preconditions":{"uid":"not-its-uid"}}"#,
    );
    assert!(
        !wrong.ok && wrong.stderr.contains("Precondition failed"),
        "{}",
        wrong.stderr
    );
    let uid = before["metadata"]["uid"].as_str().expect("uid");
    let kubelet = raw(&format!(
        r#"{{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"preconditions":{{"uid":"{uid}"}}}}"#
    ));
    assert!(kubelet.ok, "{}", kubelet.stderr);
    let gone = k.run(&["get", "pod", "bound"]);
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );

    // On no node there is no kubelet to wait for.
    k.ok(&["delete", "pod", "unbound", "--wait=false"]);
    let gone = k.run(&["get", "pod", "unbound"]);
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
}
