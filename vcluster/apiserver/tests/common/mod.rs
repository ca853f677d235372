//! An API server in the test's process, on an embedded store in a temporary directory,
//! serving the tenants a test names on a free loopback port.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::sync::Arc;

use vcluster_apiserver::{Limits, Tenant, Tenants};
use vcluster_store::{Embedded, EmbeddedOptions};

pub(crate) struct Served {
    /// The runtime the server runs on; tests use it for their own store reads.
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) tenants: Arc<Tenants>,
    /// `https://127.0.0.1:<port>`.
    pub(crate) server: String,
}

impl Served {
    /// Serves `names` (each opened before the server starts).
    pub(crate) fn start(names: &[&str]) -> (Self, Vec<Arc<Tenant>>) {
        Self::start_with(names, Limits::default())
    }

    /// [`Served::start`] within `limits`.
    pub(crate) fn start_with(names: &[&str], limits: Limits) -> (Self, Vec<Arc<Tenant>>) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = Arc::new(
            Embedded::open(dir.path().join("store.redb"), EmbeddedOptions::default())
                .expect("store"),
        );
        let tenants = Arc::new(Tenants::new(
            backend,
            "vcluster.local",
            vec!["127.0.0.1".into()],
        ));
        let (opened, port) = runtime.block_on(async {
            let mut opened = Vec::new();
            for name in names {
                opened.push(tenants.open_or_create(name).await.expect("tenant"));
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("listen");
            let port = listener.local_addr().expect("address").port();
            tokio::spawn(vcluster_apiserver::serve(listener, tenants.clone(), limits));
            (opened, port)
        });
        let served = Self {
            runtime,
            dir,
            tenants,
            server: format!("https://127.0.0.1:{port}"),
        };
        (served, opened)
    }

    /// Writes the admin kubeconfig of `tenant` (reaching it by name) to the test's
    /// directory; its path.
    pub(crate) fn admin_kubeconfig(&self, tenant: &Tenant) -> PathBuf {
        let config = tenant
            .admin_kubeconfig(&self.tenants, &self.server, true)
            .expect("kubeconfig");
        self.write(&format!("{}-admin.kubeconfig", tenant.name), &config)
    }

    /// Writes `text` (a kubeconfig) to a file of the test's directory; its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}
