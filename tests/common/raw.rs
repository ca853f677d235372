//! Raw connections to a tenant, as an attacker makes them: from a chosen loopback source
//! address, plain TCP or TLS (with the tenant's CA and SNI name from its kubeconfig), HTTP/1.1
//! written by hand or h2 with a flow-control window the client never opens.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use kube::config::Kubeconfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where a tenant is and its admin's client certificate, read from its kubeconfig.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    h2_tls: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    /// The tenant a kubeconfig (one of `vcluster up`'s: a CA, a server name, a client certificate)
    /// reaches.
    pub fn of(kubeconfig: &Path) -> Self {
        let config = Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
        let cluster = config.clusters[0].cluster.clone().expect("a cluster");
        let server = cluster.server.expect("a server URL");
        let authority = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let addr: SocketAddr = authority.parse().expect("the server is an address");
        let name = cluster
            .tls_server_name
            .unwrap_or_else(|| addr.ip().to_string());
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster.certificate_authority_data.expect("a CA"))
            .expect("base64 CA");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        let auth = config.auth_infos[0].auth_info.clone().expect("a user");
        let pem = |data: Option<String>| {
            base64::engine::general_purpose::STANDARD
                .decode(data.expect("client credentials"))
                .expect("base64 PEM")
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&pem(auth.client_certificate_data))
                .map(|c| c.expect("a PEM certificate"))
                .collect();
        let key_pem = pem(auth.client_key_data.map(|k| k.expose_secret().to_owned()));
        let key = PrivateKeyDer::from_pem_slice(&key_pem).expect("a PEM key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |alpn: Vec<Vec<u8>>| {
            let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("the client certificate");
            tls.alpn_protocols = alpn;
            Arc::new(tls)
        };
        Self {
            addr,
            server_name: ServerName::try_from(name).expect("a server name"),
            tls: build(vec![b"http/1.1".to_vec()]),
            h2_tls: build(vec![b"h2".to_vec()]),
        }
    }

    /// A plain TCP connection from `source`.
    pub async fn tcp(&self, source: IpAddr) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }

    /// A TLS connection from `source` speaking HTTP/1.1.
    pub async fn tls(&self, source: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(source).await?;
        TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
    }

    /// A TLS connection from `source` speaking h2.
    pub async fn h2_tls(&self, source: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(source).await?;
        TlsConnector::from(self.h2_tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
    }

    /// One HTTP/1.1 request as the admin on a new connection from `source`: the status code
    /// of the answer (`None` if the connection broke first).
    pub async fn request(
        &self,
        source: IpAddr,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Option<u16> {
        let mut tls = self.tls(source).await.ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        tls.write_all(head.as_bytes()).await.ok()?;
        // The server may answer (a 413) before it has read the whole body.
        let _ = tls.write_all(body).await;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        status_code(&answer)
    }
}

/// The code of an HTTP/1.1 status line.
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}
