//! Issue 12, defect 4: a small JSON patch whose `copy` operations double a subtree step
//! after step (ending in a failing `test`) drove the process to 934 MB before its 422. Its
//! copies are now weighed as they are made and refused past kube-apiserver's 3 MiB, so the
//! process's peak memory stays small, the server goes on answering others and nothing stored
//! changes. Alone in its test binary, so that the peak measured is this attack's.

mod common;

use common::Served;
use serde_json::{Value, json};
use vcluster_testkit::clients::Kubectl;

/// The bound on the test process's peak resident memory (server and test together): a
/// tenth of what the bomb took before, and far below what its 22 doublings would build
/// (4 million copies of a 32-byte leaf).
const PEAK_BOUND_KB: u64 = 300 * 1024;

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_kb() -> u64 {
    vcluster_testkit::memory_kib(None, "VmHWM").expect("VmHWM")
}

#[test]
fn a_json_patch_copy_bomb_is_refused_before_it_costs_memory() {
    let (served, opened) = Served::start(&["t", "other"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let other = Kubectl::new("v36", served.admin_kubeconfig(&opened[1]));
    k.ok(&["create", "configmap", "target", "--from-literal=a=1"]);
    let before = peak_kb();

    let mut ops = vec![
        json!({"op": "add", "path": "/bomb", "value": {"l": "0123456789abcdef0123456789abcdef"}}),
    ];
    for i in 0..22 {
        ops.push(json!({"op": "copy", "from": "/bomb", "path": format!("/bomb/c{i}")}));
    }
    ops.push(json!({"op": "test", "path": "/data/a", "value": "not this"}));
    let bomb = Value::Array(ops).to_string();
    let attack = k.run(&[
        "patch",
        "configmap",
        "target",
        "--type",
        "json",
        "-p",
        &bomb,
    ]);
    let peak = peak_kb();
    eprintln!(
        "patch bomb ({} bytes): peak RSS {before} KiB before, {peak} KiB after",
        bomb.len()
    );
    assert!(!attack.ok, "patched: {}", attack.stdout);
    assert!(
        attack.stderr.contains("Unable to complete the copy")
            && attack.stderr.contains("exceeding the limit 3145728"),
        "{}",
        attack.stderr
    );
    assert!(peak < PEAK_BOUND_KB, "peak RSS {peak} KiB");

    // More operations than upstream takes are a 413 before any is applied.
    let many = vec![json!({"op": "test", "path": "/data/a", "value": "1"}); 10_001];
    let file = served.write("many.json", &Value::Array(many).to_string());
    let refused = k.run(&[
        "patch",
        "configmap",
        "target",
        "--type",
        "json",
        "--patch-file",
        file.to_str().expect("a UTF-8 path"),
    ]);
    assert!(!refused.ok, "patched: {}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("The allowed maximum operations in a JSON patch is 10000, got 10001"),
        "{}",
        refused.stderr
    );

    // The others are served at once, and nothing stored changed or became unreadable.
    other.ok(&["get", "configmaps", "-A", "--request-timeout=5s"]);
    k.ok(&["get", "configmaps", "-A", "--request-timeout=5s"]);
    let target: Value =
        serde_json::from_str(&k.ok(&["get", "configmap", "target", "-o", "json"])).expect("json");
    assert_eq!(target["data"], json!({"a": "1"}));
    assert!(target.get("bomb").is_none(), "{target}");
}
