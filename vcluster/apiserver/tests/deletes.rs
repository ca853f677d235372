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
