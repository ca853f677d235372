//! `apiregistration.k8s.io/v1` APIServices, as kube-apiserver's aggregator has them: one
//! local APIService per served group-version (always `Available`), APIServices backed by a
//! Service with the `Available` condition the availability controller gives them, names
//! checked against what they serve. Real kubectl.

mod common;

use common::Served;
use vcluster_testkit::clients::Kubectl;

const BACKED: &str = "apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec: {ports: [{name: https, port: 443, targetPort: 4443}]}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {namespace: kube-system, name: metrics-server, port: 443}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.nowhere.example.com}
spec:
  group: nowhere.example.com
  version: v1alpha1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {namespace: default, name: nowhere}
";

#[test]
fn api_services_are_served_with_their_availability() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let local = k.eventually(&["get", "apiservices"], |out| {
        out.lines()
            .filter(|l| l.contains("Local") && l.contains("True"))
            .count()
            >= 19
    });
    for name in [
        "v1. ",
        "v1.apps ",
        "v2.autoscaling ",
        "v1.apiregistration.k8s.io ",
    ] {
        assert!(local.contains(name), "{name} missing: {local}");
    }
    let apps = k.ok(&[
        "get",
        "apiservice",
        "v1.apps",
        "-o",
        "jsonpath={.spec.groupPriorityMinimum}/{.spec.versionPriority}",
    ]);
    assert_eq!(apps, "17800/15");

    let created = k.run_with(&["apply", "-f", "-"], Some(BACKED));
    assert!(created.ok, "{}", created.stderr);
    let reason = |name: &str, expected: &str| {
        k.eventually(
            &[
                "get",
                "apiservice",
                name,
                "-o",
                "jsonpath={.status.conditions[0].reason}",
            ],
            |out| out == expected,
        );
    };
    reason("v1beta1.metrics.k8s.io", "MissingEndpoints");
    reason("v1alpha1.nowhere.example.com", "ServiceNotFound");
    let table = k.ok(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
    assert!(
        table.contains("kube-system/metrics-server") && table.contains("False (MissingEndpoints)"),
        "{table}"
    );

    let wrong = k.run_with(
        &["create", "-f", "-"],
        Some("apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: wrong}\nspec: {group: x.io, version: v1, groupPriorityMinimum: 1, versionPriority: 1}\n"),
    );
    assert!(
        wrong
            .stderr
            .contains(r#"must be `spec.version+"."+spec.group`: "v1.x.io""#),
        "{}",
        wrong.stderr
    );
}
