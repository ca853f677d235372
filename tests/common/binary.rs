//! The binary under test.
//!
//! Cargo tells only the integration tests of the package that has a binary where it is
//! (`CARGO_BIN_EXE_<name>`), and builds it only for them. So the suites ask cargo itself, once
//! per test process, through `escargot`: `cargo build` of the binary, which is a no-op when it
//! is up to date and otherwise builds what changed. The binary run is therefore never older
//! than the sources.
//!
//! Cargo holds its build lock only while it builds, not while it runs tests, so this nested
//! build does not wait on the `cargo test` that started the tests. `--workspace --examples`
//! makes it resolve features as `cargo test --workspace` does (every member, with the
//! dev-dependencies: `--examples` asks for them, and the workspace has no examples to build),
//! so that after that command the binary's dependencies are already built with the same
//! features and only the binary itself is left to link (`scripts/test` runs this same build
//! first).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vcluster_testkit::clients::workspace;

/// The path of the `vcluster` binary, built from the current sources.
pub fn vcluster_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut build = escargot::CargoBuild::new();
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_by_cargo_for_this_crate) {
                build = build.env_remove(name);
            }
        }
        let built = build
            .manifest_path(workspace().join("Cargo.toml"))
            .args(["--workspace", "--examples"])
            .bin("vcluster")
            .current_release()
            .run()
            .unwrap_or_else(|e| panic!("cannot build the vcluster binary: {e}"));
        built.path().to_owned()
    })
}

/// The variables cargo sets for the test binary it runs (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...), which the nested cargo must not inherit: build scripts that
/// read them (ring's does) would see them changed and run again, and everything above them
/// would be rebuilt, by this build and then again by the next `cargo test`.
fn set_by_cargo_for_this_crate(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || [
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .contains(&name)
}
