//! Issue 12, defect 2: whatever the server accepts it can read back, and a stored object it
//! cannot read (planted in the store, as an older server could have left it) costs nothing
//! but itself: lists, the watch cache, the controllers and namespace deletion go on without
//! it, a GET of it is a clear 500 and a DELETE removes it. On both stores.

mod common;

use bytes::Bytes;
use common::{Backing, Served};
use vcluster_apiserver::Limits;
use vcluster_testkit::clients::Kubectl;

/// What a server before the fix stored for a custom object nesting 124 levels: readable
/// alone, but `managedFields` mirror it deeper than the reader goes.
fn unreadable(namespace: &str, name: &str) -> Bytes {
    let levels = 130;
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{namespace}"}},"x":{}{}}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
    .into()
}

/// One test per store for each scenario.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[test]
            fn $scenario() { super::$scenario(super::Backing::Embedded); })*
        }
        mod etcd {
            $(#[test]
            fn $scenario() { super::$scenario(super::Backing::Etcd); })*
        }
    };
}

on_both_stores!(
    unreadable_objects_cost_only_themselves,
    objects_over_the_store_limit_are_refused,
);

fn key(namespace: &str, name: &str) -> Bytes {
    format!("/core/configmaps/{namespace}/{name}").into()
}

/// Creates the CRD of `plans.deep.example.com` (which keep every field) and waits until it
/// is served.
fn serve_plans(k: &Kubectl) {
    let crd = common::open_crd("deep.example.com", "plans", "Plan");
    let created = k.run_with(&["apply", "-f", "-"], Some(&crd));
    assert!(created.ok, "{}", created.stderr);
    k.ok(&[
        "wait",
        "--for=condition=established",
        "crd/plans.deep.example.com",
    ]);
}

/// A custom object whose spec nests `levels` objects deep (its type keeps unknown fields).
fn deep_plan(name: &str, levels: usize) -> String {
    format!(
        r#"{{"apiVersion":"deep.example.com/v1","kind":"Plan","metadata":{{"name":"{name}","namespace":"kept"}},"spec":{}"leaf"{}}}"#,
        r#"{"a":"#.repeat(levels),
        "}".repeat(levels)
    )
}

fn unreadable_objects_cost_only_themselves(backing: Backing) {
    // Two planted before the server (and its controllers and caches) starts.
    let (served, opened) =
        Served::start_on(backing, &["t"], Limits::default(), |runtime, tenants| {
            runtime.block_on(async {
                for namespace in ["kept", "doomed"] {
                    let planted = tenants[0].store.create(
                        key(namespace, "poison"),
                        unreadable(namespace, "poison"),
                        None,
                    );
                    planted.await.expect("planted");
                }
            });
        });
    let tenant = &opened[0];
    let k = Kubectl::new("v36", served.admin_kubeconfig(tenant));
    for namespace in ["kept", "doomed"] {
        k.ok(&["create", "namespace", namespace]);
        k.ok(&["create", "configmap", "fine", "-n", namespace]);
    }

    // Lists, from the store and from the watch cache, leave the unreadable object out.
    let names = k.ok(&["get", "configmaps", "-n", "kept", "-o", "name"]);
    assert!(names.contains("configmap/fine"), "{names}");
    assert!(!names.contains("poison"), "{names}");
    let everywhere = k.ok(&["get", "configmaps", "-A", "-o", "name"]);
    assert!(everywhere.contains("configmap/fine"), "{everywhere}");
    let cached = k.ok(&["get", "--raw", "/api/v1/configmaps?resourceVersion=0"]);
    assert!(
        cached.contains(r#""name":"fine""#) && !cached.contains("poison"),
        "{cached}"
    );

    // One planted while the watch cache follows the store: its event is skipped too.
    served.runtime.block_on(async {
        let planted = tenant
            .store
            .create(key("kept", "later"), unreadable("kept", "later"), None);
        planted.await.expect("planted");
    });
    k.ok(&["create", "configmap", "after", "-n", "kept"]);
    let cached = k.eventually(
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/kept/configmaps?resourceVersion=0",
        ],
        |out| out.contains(r#""name":"after""#),
    );
    assert!(!cached.contains("later"), "{cached}");

    // A GET of it is a clear 500; a DELETE removes it without reading it.
    let get = k.fails(&["get", "configmap", "poison", "-n", "kept"]);
    assert!(
        get.contains("InternalError") && get.contains("corrupt object"),
        "{get}"
    );
    for name in ["poison", "later"] {
        k.ok(&["delete", "configmap", name, "-n", "kept"]);
        let gone = served
            .runtime
            .block_on(tenant.store.get(&key("kept", name)));
        assert_eq!(gone.expect("read"), None, "{name} is still stored");
    }

    // A namespace holding one is deleted, and the unreadable object with it.
    k.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let namespace = k.fails(&["get", "namespace", "doomed"]);
    assert!(namespace.contains("NotFound"), "{namespace}");
    let left = served
        .runtime
        .block_on(tenant.store.get(&key("doomed", "poison")));
    assert_eq!(
        left.expect("read"),
        None,
        "the namespace controller left it"
    );

    // Nothing accepted is unreadable: a custom object whose managedFields would nest past
    // the reader's depth is refused (it alone would be readable), and so is one that a JSON
    // patch would nest too deep.
    serve_plans(&k);
    let refused = k.run_with(&["create", "-f", "-"], Some(&deep_plan("deep", 124)));
    assert!(!refused.ok, "stored: {}", refused.stdout);
    assert!(
        refused.stderr.contains("BadRequest") && refused.stderr.contains("exceeded max depth"),
        "{}",
        refused.stderr
    );
    let shallow = k.run_with(&["create", "-f", "-"], Some(&deep_plan("shallow", 100)));
    assert!(shallow.ok, "{}", shallow.stderr);
    let innermost = format!("/spec{}", "/a".repeat(99));
    let patch = format!(
        r#"[{{"op":"add","path":"{innermost}/b","value":{}1{}}}]"#,
        "[".repeat(30),
        "]".repeat(30)
    );
    let patched = k.run(&[
        "patch", "plan", "shallow", "-n", "kept", "--type", "json", "-p", &patch,
    ]);
    assert!(!patched.ok, "stored: {}", patched.stdout);
    assert!(
        patched.stderr.contains("exceeded max depth"),
        "{}",
        patched.stderr
    );
    // Everything stored is still readable, and the server answers at once.
    let plans = k.ok(&["get", "plans", "-A", "-o", "name", "--request-timeout=5s"]);
    assert_eq!(plans.trim(), "plan.deep.example.com/shallow");
    k.ok(&["get", "configmaps", "-A", "--request-timeout=5s"]);
    k.ok(&["get", "plan", "shallow", "-n", "kept", "-o", "json"]);
}

/// A custom object whose spec holds `bytes` of text.
fn big_plan(name: &str, bytes: usize) -> String {
    format!(
        r#"{{"apiVersion":"deep.example.com/v1","kind":"Plan","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"text":"{}"}}}}"#,
        "x".repeat(bytes)
    )
}

fn objects_over_the_store_limit_are_refused(backing: Backing) {
    let (served, opened) = Served::start_on(backing, &["t"], Limits::default(), |_, _| {});
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    serve_plans(&k);
    let too_large = |stderr: &str| {
        stderr.contains("Request entity too large: limit is 1571840")
            || stderr.contains("RequestEntityTooLarge")
    };
    // Under the request body's limit (3 MiB), over what a stored object may weigh.
    let file = served.write("huge.json", &big_plan("huge", 1600 * 1024));
    let huge = k.run(&["create", "-f", file.to_str().expect("a UTF-8 path")]);
    assert!(!huge.ok && too_large(&huge.stderr), "{}", huge.stderr);
    // A merge patch that would grow an object past it.
    let file = served.write("big.json", &big_plan("big", 1024 * 1024));
    k.ok(&["create", "-f", file.to_str().expect("a UTF-8 path")]);
    let grow = format!(r#"{{"spec":{{"more":"{}"}}}}"#, "y".repeat(600 * 1024));
    let file = served.write("grow.json", &grow);
    let grown = k.run(&[
        "patch",
        "plan",
        "big",
        "--type",
        "merge",
        "--patch-file",
        file.to_str().expect("a UTF-8 path"),
    ]);
    assert!(!grown.ok && too_large(&grown.stderr), "{}", grown.stderr);
    let names = k.ok(&["get", "plans", "-A", "-o", "name", "--request-timeout=5s"]);
    assert_eq!(names.trim(), "plan.deep.example.com/big");
}
