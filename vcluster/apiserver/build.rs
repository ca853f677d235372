//! Records what `/version` reports of the build: the git commit and its date (the build's
//! date, reproducibly), whether the tree had uncommitted changes, and the compiler. Outside
//! a git checkout (a source archive) they are "unknown" and the tree state "archive", as
//! upstream's builds say.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]);
    let date = git(&[
        "log",
        "-1",
        "--format=%cd",
        "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
    ]);
    let state = match (
        &commit,
        git(&["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (None, _) => "archive",
        (Some(_), None) => "clean",
        (Some(_), Some(_)) => "dirty",
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compiler = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    println!(
        "cargo:rustc-env=VCLUSTER_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=VCLUSTER_BUILD_DATE={}",
        date.as_deref().unwrap_or("1970-01-01T00:00:00Z")
    );
    println!("cargo:rustc-env=VCLUSTER_GIT_TREE_STATE={state}");
    println!(
        "cargo:rustc-env=VCLUSTER_RUSTC={}",
        compiler.as_deref().unwrap_or("rustc")
    );
    // Built again when the commit or the index changes (a commit, a checkout, `git add`).
    for path in ["HEAD", "index"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
