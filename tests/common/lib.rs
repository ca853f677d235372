//! What the end-to-end suites share: the `vcluster` binary, built fresh ([`vcluster_bin`]);
//! a running `vcluster up` ([`Up`]) and its tenants ([`Tenant`]); raw connections to a tenant
//! as an attacker makes them ([`raw`]); the [`scenarios!`] macro,
//! which makes one test per scenario and store, every scenario in its own tenant of one
//! server per store; and the JSON of kubectl's output.

mod binary;
pub mod raw;
mod scenarios;
mod up;

pub use binary::vcluster_bin;
pub use scenarios::{directly, on_tokio, with_each_kubectl};
pub use up::{StoreKind, Tenant, Up};

use serde_json::Value;

/// A client's output as JSON, failing the test if it is not.
pub fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("the output is not JSON ({e}): {out}"))
}

/// A kubectl of `version` for the cluster `kubeconfig` reaches, authenticating with
/// nothing but the bearer `token` (the kubeconfig copied into the directory returned, which
/// must outlive the kubectl, its current user replaced).
pub fn kubectl_with_token(
    version: &str,
    kubeconfig: &std::path::Path,
    token: &str,
) -> (tempfile::TempDir, vcluster_testkit::clients::Kubectl) {
    let scratch = tempfile::tempdir().expect("a directory for the kubeconfig");
    let config = scratch.path().join("token");
    std::fs::copy(kubeconfig, &config).expect("copy the kubeconfig");
    let k = vcluster_testkit::clients::Kubectl::new(version, &config);
    k.ok(&[
        "config",
        "set-credentials",
        "bearer",
        &format!("--token={token}"),
    ]);
    k.ok(&["config", "set-context", "--current", "--user=bearer"]);
    (scratch, k)
}

/// The `items` of a list in a client's output (none if it has none).
pub fn items(out: &str) -> Vec<Value> {
    json(out)["items"].as_array().cloned().unwrap_or_default()
}
