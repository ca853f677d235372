//! Shared by the end-to-end tests: a running `vcluster up`.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vcluster_testkit::clients::Kubectl;
use vcluster_testkit::{EtcdCluster, SharedEtcd, free_port};

/// A running `vcluster up`, killed when dropped.
pub struct Up {
    child: Child,
    pub dir: tempfile::TempDir,
    _etcd: Option<SharedEtcd>,
}

pub enum StoreKind {
    Embedded,
    Etcd,
}

impl Up {
    pub fn start(store: StoreKind) -> Self {
        Self::start_with(store, &[])
    }

    /// With the node simulator registering `nodes` nodes.
    pub fn with_nodes(store: StoreKind, nodes: usize) -> Self {
        Self::start_with(store, &["--simulated-nodes", &nodes.to_string()])
    }

    /// With extra arguments to `vcluster up`.
    pub fn start_with(store: StoreKind, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("data directory");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vcluster"));
        cmd.args(["up", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env("VCLUSTER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let etcd = match store {
            StoreKind::Embedded => None,
            StoreKind::Etcd => {
                // Each run gets its own etcd: tenants of different runs must not meet.
                let etcd = SharedEtcd::Owned(EtcdCluster::single());
                cmd.args([
                    "--store",
                    "etcd",
                    "--etcd-endpoints",
                    &etcd.endpoints().join(","),
                ]);
                Some(etcd)
            }
        };
        let child = cmd.spawn().expect("start vcluster up");
        let up = Self {
            child,
            dir,
            _etcd: etcd,
        };
        up.wait_ready();
        up
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig().exists() {
                let k = Kubectl::new("v36", self.kubeconfig());
                if k.run(&["get", "--raw", "/healthz"]).ok {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vcluster up did not become ready within 30 s");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
