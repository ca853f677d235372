//! The listener: TLS (h2 and HTTP/1.1) for every tenant on one port.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, Connection};
use crate::tenant::Tenants;

/// Aborts a background task when dropped: the controllers live as long as `serve`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves every tenant on `listener`, and runs the controllers, until the task is dropped.
pub async fn serve(listener: TcpListener, tenants: Arc<Tenants>) -> std::io::Result<()> {
    let _controllers = AbortOnDrop(tokio::spawn(crate::feed::run(tenants.clone())));
    let config = crate::tls::server_config(tenants.clone()).map_err(std::io::Error::other)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, tenants) = (acceptor.clone(), tenants.clone());
        tokio::spawn(async move { connection(acceptor, tenants, tcp, peer).await });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tenants: Arc<Tenants>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let conn = Arc::new(Connection::new(
        session.server_name().map(str::to_owned),
        session
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    ));
    let service = service_fn(move |req| {
        let (tenants, conn) = (tenants.clone(), conn.clone());
        async move { Ok::<_, std::convert::Infallible>(api::handle(&tenants, &conn, req).await) }
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
