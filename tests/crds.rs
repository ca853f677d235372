//! Custom resources with real kubectl (1.33 and 1.36), on the embedded store and on etcd:
//! a CRD is served as soon as it is created, its objects are pruned, defaulted and
//! validated against its schema, shown with its printer columns, scaled, read at either
//! version, and deleted with it.

use vcluster_tests::{Tenant, json, with_each_kubectl};

vcluster_tests::scenarios! {
    simulated_nodes: 0;
    with_each_kubectl: [custom_resources],
}

fn crd(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Age, type: date, jsonPath: .metadata.creationTimestamp}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1}}
              color: {{type: string, enum: [red, blue], default: red}}
              replicas: {{type: integer}}
          status:
            type: object
            properties:
              ready: {{type: boolean}}
              replicas: {{type: integer}}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#
    )
}

fn widget(group: &str, name: &str, size: &str) -> String {
    format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: {size}\n  junk: dropped\n"
    )
}

fn custom_resources(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let group = format!("{version}.example.com");
    let established = || {
        k.ok(&[
            "wait",
            "--for=condition=established",
            &format!("crd/widgets.{group}"),
            "--timeout=10s",
        ])
    };
    let applied = k.run_with(&["apply", "-f", "-"], Some(&crd(&group)));
    assert!(applied.ok, "{}", applied.stderr);
    established();
    let resources = k.ok(&["api-resources", "--api-group", &group]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );

    // Created at once after the CRD: pruned and defaulted.
    let created = k.run_with(&["apply", "-f", "-"], Some(&widget(&group, "w1", "3")));
    assert!(created.ok, "{}", created.stderr);
    let w1 = json(&k.ok(&["get", &format!("widgets.{group}"), "w1", "-o", "json"]));
    assert_eq!(w1["spec"]["size"], 3);
    assert_eq!(w1["spec"]["color"], "red", "the schema's default");
    assert!(
        w1["spec"].get("junk").is_none(),
        "unknown fields are pruned: {w1}"
    );

    // kubectl get shows the printer columns.
    let table = k.ok(&["get", &format!("wd.{group}"), "w1"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains(" 3 ") && row.contains("red")),
        "{table}"
    );

    // kubectl explain reads the CRD's schema from /openapi/v3.
    let explained = k.ok(&[
        "explain",
        "widgets.spec.color",
        &format!("--api-version={group}/v1"),
    ]);
    assert!(
        explained.contains("color") && explained.contains("<string>"),
        "{explained}"
    );

    // Schema violations: 422 with the field's path, nothing written.
    let invalid = k.run_with(&["apply", "-f", "-"], Some(&widget(&group, "w2", "big")));
    assert!(!invalid.ok);
    assert!(
        invalid.stderr.contains("spec.size") && invalid.stderr.contains("must be of type integer"),
        "{}",
        invalid.stderr
    );
    let small = k.run_with(&["apply", "-f", "-"], Some(&widget(&group, "w3", "0")));
    assert!(
        small
            .stderr
            .contains("should be greater than or equal to 1"),
        "{}",
        small.stderr
    );
    let names = k.ok(&["get", &format!("widgets.{group}"), "-o", "name"]);
    assert_eq!(names.trim(), format!("widget.{group}/w1"));

    // A second apply (a merge patch: custom resources have no strategic merge).
    let changed = widget(&group, "w1", "4").replace("  junk: dropped\n", "  color: blue\n");
    let reapplied = k.run_with(&["apply", "-f", "-"], Some(&changed));
    assert!(reapplied.ok, "{}", reapplied.stderr);
    let w1 = json(&k.ok(&["get", &format!("widgets.{group}"), "w1", "-o", "json"]));
    assert_eq!(
        (w1["spec"]["size"].as_i64(), w1["spec"]["color"].as_str()),
        (Some(4), Some("blue"))
    );

    // The scale and status subresources.
    k.ok(&["scale", &format!("widgets.{group}"), "w1", "--replicas=5"]);
    let w1 = json(&k.ok(&["get", &format!("widgets.{group}"), "w1", "-o", "json"]));
    assert_eq!(w1["spec"]["replicas"], 5);
    k.ok(&[
        "patch",
        &format!("widgets.{group}"),
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true,"replicas":5}}"#,
    ]);
    k.ok(&[
        "patch",
        &format!("widgets.{group}"),
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":false}}"#,
    ]);
    let w1 = json(&k.ok(&["get", &format!("widgets.{group}"), "w1", "-o", "json"]));
    assert_eq!(
        w1["status"]["ready"], true,
        "the main endpoint keeps the status"
    );

    // The other served version: the same object, at that apiVersion.
    let beta = json(&k.ok(&[
        "get",
        &format!("widgets.v1beta1.{group}"),
        "w1",
        "-o",
        "json",
    ]));
    assert_eq!(beta["apiVersion"], format!("{group}/v1beta1"));
    assert_eq!(beta["spec"]["size"], 4);

    // Deleting the CRD deletes its objects, and its resources leave discovery.
    k.ok(&[
        "delete",
        "crd",
        &format!("widgets.{group}"),
        "--timeout=20s",
    ]);
    let gone = k.fails(&["get", &format!("widgets.{group}")]);
    assert!(gone.contains("doesn't have a resource type"), "{gone}");
    let again = k.run_with(&["apply", "-f", "-"], Some(&crd(&group)));
    assert!(again.ok, "{}", again.stderr);
    established();
    let left = k.ok(&["get", &format!("widgets.{group}"), "-o", "name"]);
    assert!(left.trim().is_empty(), "objects outlived their CRD: {left}");
}
