//! The listener: TLS (h2 and HTTP/1.1) for every tenant on one port, and its shutdown.
//!
//! A shutdown drains as kube-apiserver's does: readiness fails at once, the listener
//! closes, every watch ends cleanly (its client starts again from its last
//! resourceVersion, elsewhere), requests in flight are finished and their connections
//! closed (h2 with GOAWAY), for at most [`DRAIN_TIMEOUT`]. Every write answered before is
//! durable: the store acknowledges nothing it has not synced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
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

/// How long a shutdown waits for requests in flight before it gives up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves every tenant on `listener`, and runs the controllers, until the task is dropped.
pub async fn serve(listener: TcpListener, tenants: Arc<Tenants>) -> std::io::Result<()> {
    serve_until(listener, tenants, std::future::pending()).await
}

/// [`serve`] until `shutdown` resolves, then drains (see the module) and returns.
pub async fn serve_until(
    listener: TcpListener,
    tenants: Arc<Tenants>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let controllers = AbortOnDrop(tokio::spawn(crate::feed::run(tenants.clone())));
    let config = crate::tls::server_config(tenants.clone()).map_err(std::io::Error::other)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let (acceptor, tenants) = (acceptor.clone(), tenants.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move { connection(acceptor, tenants, tcp, peer, watcher).await });
    }
    tenants.start_draining();
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        connections = open,
        "draining: the listener is closed, watches end, requests in flight finish"
    );
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight after the drain timeout; stopping anyway")
        }
    }
    drop(controllers);
    Ok(())
}

async fn connection(
    acceptor: TlsAcceptor,
    tenants: Arc<Tenants>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
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
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(served.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
