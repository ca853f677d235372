//! Writes a seed corpus for `protobuf_decode`: real objects encoded with k8s-pb (the prost
//! types of the Kubernetes messages) in the envelope kubectl sends, without the magic prefix
//! the fuzz target adds. Run from `fuzz/`: `cargo run --bin seeds`.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    }
    .encode_to_vec()
}

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        annotations: [("a".to_owned(), "b".to_owned())].into(),
        finalizers: vec!["example.com/f".into()],
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: Some(0),
        }),
        ..Default::default()
    })
}

fn pod_spec() -> core::PodSpec {
    core::PodSpec {
        containers: vec![core::Container {
            name: Some("web".into()),
            image: Some("nginx:1".into()),
            args: vec!["--port=80".into()],
            env: vec![core::EnvVar {
                name: Some("A".into()),
                value: Some("1".into()),
                ..Default::default()
            }],
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
            readiness_probe: Some(core::Probe {
                handler: Some(core::ProbeHandler {
                    http_get: Some(core::HttpGetAction {
                        port: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: Some("http".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        node_selector: [("disk".to_owned(), "ssd".to_owned())].into(),
        tolerations: vec![core::Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }],
        volumes: vec![core::Volume {
            name: Some("data".into()),
            volume_source: Some(core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: Some(core::LocalObjectReference {
                        name: Some("cfg".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

fn main() {
    let dir = std::path::Path::new("corpus/protobuf_decode");
    std::fs::create_dir_all(dir).expect("corpus directory");
    let template = core::PodTemplateSpec {
        metadata: meta("web"),
        spec: Some(pod_spec()),
    };
    let seeds = [
        (
            "configmap",
            envelope(
                "v1",
                "ConfigMap",
                core::ConfigMap {
                    metadata: meta("c"),
                    data: [("k".to_owned(), "v".to_owned())].into(),
                    binary_data: [("b".to_owned(), vec![0, 1, 2])].into(),
                    immutable: Some(true),
                }
                .encode_to_vec(),
            ),
        ),
        (
            "pod",
            envelope(
                "v1",
                "Pod",
                core::Pod {
                    metadata: meta("p"),
                    spec: Some(pod_spec()),
                    status: None,
                }
                .encode_to_vec(),
            ),
        ),
        (
            "deployment",
            envelope(
                "apps/v1",
                "Deployment",
                apps::Deployment {
                    metadata: meta("d"),
                    spec: Some(apps::DeploymentSpec {
                        replicas: Some(3),
                        selector: Some(meta::LabelSelector {
                            match_labels: [("app".to_owned(), "web".to_owned())].into(),
                            ..Default::default()
                        }),
                        template: Some(template),
                        paused: Some(false),
                        ..Default::default()
                    }),
                    status: None,
                }
                .encode_to_vec(),
            ),
        ),
        (
            "service",
            envelope(
                "v1",
                "Service",
                core::Service {
                    metadata: meta("s"),
                    spec: Some(core::ServiceSpec {
                        ports: vec![core::ServicePort {
                            port: Some(80),
                            target_port: Some(IntOrString {
                                r#type: Some(0),
                                int_val: Some(8080),
                                str_val: None,
                            }),
                            ..Default::default()
                        }],
                        selector: [("app".to_owned(), "web".to_owned())].into(),
                        r#type: Some("ClusterIP".into()),
                        ..Default::default()
                    }),
                    status: None,
                }
                .encode_to_vec(),
            ),
        ),
        (
            "tokenrequest",
            envelope(
                "authentication.k8s.io/v1",
                "TokenRequest",
                authn::TokenRequest {
                    metadata: meta("robot"),
                    spec: Some(authn::TokenRequestSpec {
                        audiences: vec!["https://a.vcluster.local".into()],
                        expiration_seconds: Some(3600),
                        bound_object_ref: None,
                    }),
                    status: None,
                }
                .encode_to_vec(),
            ),
        ),
    ];
    let count = seeds.len();
    for (name, body) in seeds {
        std::fs::write(dir.join(name), body).expect("write a seed");
    }
    println!("wrote {count} seeds to {}", dir.display());
}
