//! An API server in the test's process, on an embedded store in a temporary directory (or
//! a real etcd of its own), serving the tenants a test names on a free loopback port.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::sync::Arc;

use vcluster_apiserver::{Limits, Tenant, Tenants};
use vcluster_store::{Backend, Embedded, EmbeddedOptions, Etcd, EtcdOptions};
use vcluster_testkit::EtcdCluster;

/// The store a served test runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backing {
    Embedded,
    Etcd,
}

pub(crate) struct Served {
    /// The runtime the server runs on; tests use it for their own store reads.
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) tenants: Arc<Tenants>,
    /// `https://127.0.0.1:<port>`.
    pub(crate) server: String,
    /// The etcd the store is, kept as long as the server.
    etcd: Option<EtcdCluster>,
}

impl Served {
    /// Serves `names` (each opened before the server starts).
    pub(crate) fn start(names: &[&str]) -> (Self, Vec<Arc<Tenant>>) {
        Self::start_on(Backing::Embedded, names, Limits::default(), |_, _| {})
    }

    /// [`Served::start`] within `limits`.
    pub(crate) fn start_limited(names: &[&str], limits: Limits) -> (Self, Vec<Arc<Tenant>>) {
        Self::start_on(Backing::Embedded, names, limits, |_, _| {})
    }

    /// Serves `names` on `backing` within `limits`, with `before` run on the opened tenants
    /// before the server and its controllers start (to plant what they find at their start).
    pub(crate) fn start_on(
        backing: Backing,
        names: &[&str],
        limits: Limits,
        before: impl FnOnce(&tokio::runtime::Runtime, &[Arc<Tenant>]),
    ) -> (Self, Vec<Arc<Tenant>>) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let (backend, etcd): (Arc<dyn Backend>, _) = match backing {
            Backing::Embedded => {
                let embedded =
                    Embedded::open(dir.path().join("store.redb"), EmbeddedOptions::default())
                        .expect("store");
                (Arc::new(embedded), None)
            }
            Backing::Etcd => {
                let etcd = EtcdCluster::single();
                let options = EtcdOptions::new(etcd.endpoints());
                let client = runtime
                    .block_on(Etcd::connect(options))
                    .expect("connect to etcd");
                (Arc::new(client), Some(etcd))
            }
        };
        let tenants = Arc::new(Tenants::new(
            backend,
            "vcluster.local",
            vec!["127.0.0.1".into()],
        ));
        let opened = runtime.block_on(async {
            let mut opened = Vec::new();
            for name in names {
                opened.push(tenants.open_or_create(name).await.expect("tenant"));
            }
            opened
        });
        before(&runtime, &opened);
        let port = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("listen");
            let port = listener.local_addr().expect("address").port();
            tokio::spawn(vcluster_apiserver::serve(listener, tenants.clone(), limits));
            port
        });
        let served = Self {
            runtime,
            dir,
            tenants,
            server: format!("https://127.0.0.1:{port}"),
            etcd,
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

/// A namespaced CRD of one version whose objects keep every field (no schema to prune by).
pub(crate) fn open_crd(group: &str, plural: &str, kind: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
"
    )
}
