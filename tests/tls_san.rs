//! `vcluster up --tls-san`: the extra names are in the served certificate, as kubectl sees
//! when it connects expecting each of them (`--tls-server-name`).

use vcluster_testkit::clients::Kubectl;
use vcluster_tests::{StoreKind, Up};

#[test]
fn tls_san_names_are_in_the_serving_certificate() {
    let up = Up::start_with(
        StoreKind::Embedded,
        &[],
        0,
        &[
            "--tls-san",
            "api.example.com,10.11.12.13",
            "--tls-san",
            "other.example.com",
        ],
    );
    let k = Kubectl::new("v36", up.kubeconfig());
    for name in [
        "api.example.com",
        "10.11.12.13",
        "other.example.com",
        "localhost",
    ] {
        let run = k.run(&["--tls-server-name", name, "get", "namespace", "default"]);
        assert!(run.ok, "as {name}: {}", run.stderr);
    }
    let refused = k.fails(&[
        "--tls-server-name",
        "unlisted.example.com",
        "get",
        "namespace",
        "default",
    ]);
    assert!(
        refused.contains("certificate is valid for"),
        "a name not given is not in the certificate: {refused}"
    );
}
