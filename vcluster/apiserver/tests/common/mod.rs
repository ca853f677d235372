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

    /// A kube-rs client of `tenant`'s admin (reaching it by name).
    pub(crate) async fn kube_client(&self, tenant: &Tenant) -> kube::Client {
        let config = tenant
            .admin_kubeconfig(&self.tenants, &self.server, true)
            .expect("kubeconfig");
        let config = kube::config::Kubeconfig::from_yaml(&config).expect("kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(config, &options)
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
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

/// How long a raw request's whole response may take to end: far more than any of them needs.
const RAW_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How a raw request's TLS connection is made: the name it asks for (SNI; `None`: the
/// address alone, as a client connecting by IP), the CA it trusts, and the client
/// certificate and key (PEM) it presents, if any.
pub(crate) struct Tls<'a> {
    pub(crate) server_name: Option<&'a str>,
    pub(crate) ca_pem: &'a str,
    pub(crate) client: Option<(String, String)>,
}

/// A response as it came over the wire: the status code, the head (status line and
/// headers, without `date`, which differs from one second to the next) and the body
/// (de-chunked).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawResponse {
    pub(crate) code: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    fn parse(raw: &[u8]) -> Self {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8(raw[..split].to_vec()).expect("an ASCII head");
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let mut body = raw[split + 4..].to_vec();
        if chunked {
            body = dechunk(&body);
        }
        let head = head
            .lines()
            .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        Self { code, head, body }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The data of an HTTP/1.1 chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
    out
}

impl Served {
    /// Sends one HTTP/1.1 request (`Connection: close`) over a new TLS connection, with no
    /// client library between (so that the bytes compared are the server's own), and reads
    /// the response to its end.
    pub(crate) fn raw(
        &self,
        tls: &Tls<'_>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(tls.ca_pem.as_bytes()).expect("a CA"))
            .expect("a trusted CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let mut config = match &tls.client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("a certificate chain"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key"),
                )
                .expect("a client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = match tls.server_name {
            Some(name) => ServerName::try_from(name.to_owned()).expect("a server name"),
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let address = self.server.strip_prefix("https://").expect("an https URL");
        let raw = self.runtime.block_on(async {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
            tls.write_all(request.as_bytes()).await.expect("send");
            tls.write_all(body).await.expect("send the body");
            let mut raw = Vec::new();
            // The server may close without a TLS close_notify once it has answered. A
            // response that does not end (a watch that should have) fails the test.
            let read = tokio::time::timeout(RAW_WITHIN, tls.read_to_end(&mut raw)).await;
            match read.unwrap_or_else(|_| panic!("{method} {path}: no end within {RAW_WITHIN:?}")) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => panic!("reading the response: {e}"),
            }
            raw
        });
        RawResponse::parse(&raw)
    }
}
