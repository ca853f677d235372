//! Bodies encoded with k8s-pb (the prost types of the real messages) decode to the JSON a
//! JSON client would have sent.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn object_meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(String::new()),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        creation_timestamp: Some(meta::Time {
            seconds: Some(0),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

#[test]
fn a_configmap_from_kubectl_create() {
    let cm = core::ConfigMap {
        metadata: Some(object_meta("c1")),
        data: [
            ("a".to_owned(), "b".to_owned()),
            ("empty".to_owned(), String::new()),
        ]
        .into(),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2])].into(),
        immutable: Some(false),
    };
    let json = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).expect("decode");
    assert_eq!(
        json,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c1", "labels": {"app": "web"}},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC"},
            "immutable": false,
        })
    );
}

#[test]
fn a_deployment_with_the_special_types() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "cpu".to_owned(),
                Quantity {
                    string: Some("500m".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(object_meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    host_ipc: Some(true),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let json = decode(&envelope(
        "apps/v1",
        "Deployment",
        deployment.encode_to_vec(),
    ))
    .expect("decode");
    assert_eq!(json["spec"]["replicas"], 0, "an explicit zero is kept");
    assert_eq!(
        json["spec"]["template"]["spec"]["hostIPC"], true,
        "JSON names keep their acronyms"
    );
    let c = &json["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(json["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(
        json["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    assert_eq!(json["spec"]["selector"]["matchLabels"]["app"], "web");
    assert!(
        json["metadata"].get("creationTimestamp").is_none(),
        "a zero time is omitted"
    );
}

#[test]
fn times_and_durations_print_as_go_does() {
    let ts = meta::Time {
        seconds: Some(1_700_000_000),
        nanos: Some(0),
    };
    let decoded =
        decode_message(index()[&*format!("{META}Time")], &ts.encode_to_vec(), 0).expect("decode");
    assert_eq!(decoded, Some(json!("2023-11-14T22:13:20Z")));
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(250_000_000), "250ms");
}

/// JSON names that are not the camelCase of prost's field names: k8s-openapi's are used.
#[test]
fn irregular_json_names() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let schema = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        r#ref: Some("#/definitions/x".into()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        x_kubernetes_list_map_keys: vec!["name".into()],
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(object_meta("widgets.example.com")),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let envelope_crd = envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd.encode_to_vec(),
    );
    let json = decode(&envelope_crd).expect("decode");
    let decoded = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(decoded["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(decoded["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(decoded["$ref"], "#/definitions/x");

    let fc = core::FcVolumeSource {
        target_ww_ns: vec!["w1".into()],
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(object_meta("p")),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: Some("v".into()),
                volume_source: Some(core::VolumeSource {
                    fc: Some(fc),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let json = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decode");
    assert_eq!(
        json["spec"]["volumes"][0]["fc"]["targetWWNs"],
        json!(["w1"]),
        "{json}"
    );
}

#[test]
fn delete_options_from_a_typed_client() {
    let options = meta::DeleteOptions {
        propagation_policy: Some("Foreground".into()),
        preconditions: Some(meta::Preconditions {
            uid: Some("u-1".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let json = decode(&envelope("v1", "DeleteOptions", options.encode_to_vec())).expect("decode");
    assert_eq!(json["propagationPolicy"], "Foreground");
    assert_eq!(json["preconditions"]["uid"], "u-1");
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    assert_eq!(decode(b"{\"json\": true}"), Err(Error::NotKubernetes));
    let good = envelope(
        "v1",
        "ConfigMap",
        core::ConfigMap::default().encode_to_vec(),
    );
    for cut in 4..good.len() {
        let _ = decode(&good[..cut]); // any answer but a panic
    }
    assert!(matches!(
        decode(&envelope("v1", "NoSuchKind", vec![])),
        Err(Error::UnknownKind { .. })
    ));
    assert!(
        decode(
            &[
                MAGIC,
                &[
                    0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ]
            ]
            .concat()
        )
        .is_err()
    );
    // A message nested past the limit.
    let mut nested = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x0a];
        let mut len = nested.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(byte);
                break;
            }
            outer.push(byte | 0x80);
        }
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    let _ = decode(&envelope("v1", "ConfigMap", nested));
}

#[test]
fn strict_validation_finds_unknown_fields_only() {
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"a": "b"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replica": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "imagePullPolicy": "Always", "resources": {"limits": {"cpu": "1"}}, "colour": "red"}
        ]}}, "strategy": {"rollingUpdate": {"maxSurge": "25%"}}},
        "status": {"conditions": [{"type": "Available", "lastUpdateTime": "2026-01-01T00:00:00Z"}]},
    });
    let decoded = decode_typed(&mut deployment, "apps/v1", "Deployment")
        .expect("a built-in kind")
        .expect("well typed");
    assert_eq!(
        decoded.unknown,
        vec!["spec.replica", "spec.template.spec.containers[0].colour"]
    );
    assert!(
        deployment.pointer("/spec/replica").is_none()
            && deployment
                .pointer("/spec/template/spec/containers/0/colour")
                .is_none(),
        "unknown fields are dropped, as Go's decoder drops them"
    );
    assert_eq!(
        deployment.pointer("/spec/template/spec/containers/0/imagePullPolicy"),
        Some(&json!("Always"))
    );
    assert_eq!(
        decode_typed(&mut json!({}), "example.com/v1", "Widget"),
        None
    );
}
