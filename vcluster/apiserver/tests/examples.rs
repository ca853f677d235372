//! The manifests in `examples/` apply cleanly with real kubectl (both versions), with
//! server-side field validation, and what they describe is there afterwards.

mod common;

use std::path::Path;

use common::Served;
use vcluster_testkit::clients::Kubectl;

#[test]
fn every_example_applies() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut manifests: Vec<_> = std::fs::read_dir(&examples)
        .expect("examples/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(
        !manifests.is_empty(),
        "no manifests in {}",
        examples.display()
    );
    let (served, opened) = Served::start(&["t"]);
    let path = served.admin_kubeconfig(&opened[0]);
    // Applied by each kubectl in turn: the second apply is an update of the first's.
    for manifest in &manifests {
        let file = manifest.to_str().expect("a UTF-8 path");
        for version in ["v33", "v36"] {
            let applied =
                Kubectl::new(version, &path).run(&["apply", "--validate=strict", "-f", file]);
            assert!(applied.ok, "{version} {file}: {}", applied.stderr);
        }
    }
    let k = Kubectl::new("v36", &path);
    let listed = k.ok(&[
        "get",
        "deployment,service,configmap,hpa",
        "-n",
        "shop",
        "-o",
        "name",
    ]);
    for object in [
        "deployment.apps/web",
        "service/web",
        "configmap/web-config",
        "horizontalpodautoscaler.autoscaling/web",
    ] {
        assert!(listed.contains(object), "{object} missing: {listed}");
    }
}
