//! The health probes and `/version`, read by real kubectl as monitoring and clients read
//! them: named checks, `?verbose`, one check alone, readiness failing once the server
//! drains while liveness holds, and the build's real commit and platform.

mod common;

use common::Served;
use vcluster_testkit::clients::Kubectl;

#[test]
fn probes_name_their_checks_and_readiness_fails_while_draining() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));

    assert_eq!(k.ok(&["get", "--raw", "/readyz"]), "ok");
    let verbose = k.ok(&["get", "--raw", "/readyz?verbose"]);
    for line in [
        "[+]ping ok",
        "[+]etcd ok",
        "[+]shutdown ok",
        "readyz check passed",
    ] {
        assert!(verbose.contains(line), "{line:?} missing from {verbose}");
    }
    let live = k.ok(&["get", "--raw", "/livez?verbose"]);
    assert!(
        live.contains("[+]etcd ok") && !live.contains("shutdown"),
        "{live}"
    );
    assert_eq!(k.ok(&["get", "--raw", "/livez/etcd"]), "ok");
    let unknown = k.run(&["get", "--raw", "/readyz/nonsense"]);
    assert!(
        !unknown.ok && unknown.stderr.contains("NotFound"),
        "{}",
        unknown.stderr
    );
    let excluded = k.ok(&["get", "--raw", "/readyz?verbose&exclude=etcd"]);
    assert!(excluded.contains("[+]etcd excluded: ok"), "{excluded}");

    served.tenants.start_draining();
    let draining = k.run(&["get", "--raw", "/readyz?verbose"]);
    assert!(!draining.ok, "readiness passed while draining");
    assert!(
        draining
            .stderr
            .contains("[-]shutdown failed: reason withheld"),
        "{}",
        draining.stderr
    );
    assert_eq!(
        k.ok(&["get", "--raw", "/livez"]),
        "ok",
        "a draining server is alive"
    );
}

#[test]
fn version_reports_the_build() {
    let (served, opened) = Served::start(&["t"]);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&opened[0]));
    let version: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "--raw", "/version"])).expect("json");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(version["gitCommit"], head.as_str(), "{version}");
    let git_version = version["gitVersion"].as_str().expect("gitVersion");
    assert!(
        git_version.starts_with("v1.34.0+vcluster."),
        "{git_version}"
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(version["platform"], format!("linux/{arch}").as_str());
    assert!(
        version["goVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("rustc ")),
        "{version}"
    );
}
