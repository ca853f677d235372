//! The listener: TLS (h2 and HTTP/1.1) for every tenant on one port, within [`Limits`],
//! and its shutdown.
//!
//! No client can stop the server or starve the others: a failed accept (out of file
//! descriptors, say) is logged and retried after a back-off, as Go's server does;
//! connections past the total or per-source cap are closed at once; the TLS handshake and
//! each request's headers must arrive within the read-header timeout, and a connection
//! with nothing in flight is closed after the idle timeout; an HTTP/2 connection has a
//! bounded number of streams, each with bounded buffers (see [`Limits`] and `inflight.rs`
//! for the requests themselves).
//!
//! A shutdown drains as kube-apiserver's does: readiness fails at once, the listener
//! closes, every watch ends cleanly (its client starts again from its last
//! resourceVersion, elsewhere), requests in flight are finished and their connections
//! closed (h2 with GOAWAY), for at most [`DRAIN_TIMEOUT`]. Every write answered before is
//! durable: the store acknowledges nothing it has not synced.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, Connection};
use crate::inflight::Gate;
use crate::limits::{Limits, Throttled};
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

/// Serves every tenant on `listener` within `limits`, and runs the controllers, until the
/// task is dropped.
pub async fn serve(
    listener: TcpListener,
    tenants: Arc<Tenants>,
    limits: Limits,
) -> std::io::Result<()> {
    serve_until(listener, tenants, limits, std::future::pending()).await
}

/// [`serve`] until `shutdown` resolves, then drains (see the module) and returns.
pub async fn serve_until(
    listener: TcpListener,
    tenants: Arc<Tenants>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let controllers = AbortOnDrop(tokio::spawn(crate::feed::run(tenants.clone())));
    let _progress = AbortOnDrop(tokio::spawn(tenants.follow_progress()));
    let config = crate::tls::server_config(tenants.clone()).map_err(std::io::Error::other)?;
    let server = Arc::new(Server {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        tenants: tenants.clone(),
        gate: Gate::new(&limits),
        open: Arc::default(),
        limits,
    });
    // Every connection holds a receiver until it ends: the drain signals them and waits
    // for the last to go.
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    let mut backoff = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = None;
                accepted
            }
            Err(e) => {
                let delay = next_backoff(backoff);
                backoff = Some(delay);
                if let Some(unlogged) = ACCEPT_FAILED.check() {
                    tracing::warn!(error = %e, retry_in = ?delay, unlogged, "cannot accept a connection; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let Some(admitted) = server.open.admit(peer.ip(), &server.limits) else {
            continue;
        };
        let (server, stopping) = (server.clone(), stopping.clone());
        tokio::spawn(async move { server.connection(tcp, peer, admitted, stopping).await });
    }
    tenants.start_draining();
    drop(listener);
    drop(stopping);
    let _ = stop.send(());
    tracing::info!(
        connections = stop.receiver_count(),
        "draining: the listener is closed, watches end, requests in flight finish"
    );
    match tokio::time::timeout(DRAIN_TIMEOUT, stop.closed()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight after the drain timeout; stopping anyway")
        }
    }
    drop(controllers);
    Ok(())
}

static ACCEPT_FAILED: Throttled = Throttled::new();
static REFUSED: Throttled = Throttled::new();

/// Go's back-off after a failed accept: 5 ms, doubling up to a second.
fn next_backoff(last: Option<Duration>) -> Duration {
    last.map_or(Duration::from_millis(5), |d| {
        (d * 2).min(Duration::from_secs(1))
    })
}

/// What every connection is served with.
struct Server {
    acceptor: TlsAcceptor,
    tenants: Arc<Tenants>,
    gate: Gate,
    open: Arc<Open>,
    limits: Limits,
}

/// The connections open now, in all and by source address.
#[derive(Default)]
struct Open(Mutex<OpenCount>);

#[derive(Default)]
struct OpenCount {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl Open {
    /// Counts a connection from `source` open, unless that passes a cap (then it is
    /// logged, and the connection is to be closed).
    fn admit(self: &Arc<Self>, source: IpAddr, limits: &Limits) -> Option<Admitted> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let from_source = open.by_source.get(&source).copied().unwrap_or(0);
        let refused = if open.total >= limits.max_connections {
            Some(("the server", open.total, limits.max_connections))
        } else if from_source >= limits.max_connections_per_source {
            Some((
                "this source",
                from_source,
                limits.max_connections_per_source,
            ))
        } else {
            None
        };
        if let Some((whose, open, cap)) = refused {
            if let Some(unlogged) = REFUSED.check() {
                tracing::warn!(%source, open, cap, unlogged, "connection refused: {whose} has as many connections open as it may");
            }
            return None;
        }
        open.total += 1;
        *open.by_source.entry(source).or_default() += 1;
        Some(Admitted {
            open: self.clone(),
            source,
        })
    }
}

/// A connection counted open until dropped.
struct Admitted {
    open: Arc<Open>,
    source: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// HTTP/2 flow control as kube-apiserver sets it: 256 KiB per stream (what 99% of
/// serialized objects fit in), frames up to that size, and a connection window for every
/// stream at once. Each stream's send buffer is bounded by the same size.
const H2_STREAM_BUFFER: u32 = 256 << 10;

/// How often an HTTP/2 connection is pinged, and how long its pong may take, so that a
/// peer gone without a word is noticed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The most headers an HTTP/1.1 request may have (hyper's default is 100; Go has no such
/// limit, only [`Limits::max_header_bytes`]).
const H1_MAX_HEADERS: usize = 1024;

impl Server {
    /// Serves one connection: the TLS handshake, then HTTP until the client or the drain
    /// ends it, or it is idle for [`Limits::idle_timeout`].
    async fn connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        _admitted: Admitted,
        mut stopping: watch::Receiver<()>,
    ) {
        let limits = &self.limits;
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(limits.read_header_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
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
        let (active, mut activity) = watch::channel(0usize);
        let active = Arc::new(active);
        let server = self.clone();
        let service = service_fn(move |req| {
            let (server, conn, active) = (server.clone(), conn.clone(), active.clone());
            async move {
                let busy = Busy::new(active);
                let response = api::handle(&server.tenants, &conn, &server.gate, req).await;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Counted { body, _busy: busy }),
                )
            }
        });
        let builder = self.builder();
        let served = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(served);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = served.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stopping.changed(), if !closing => {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = idle_for(&mut activity, limits.idle_timeout), if !closing => {
                    tracing::debug!(%peer, "closing an idle connection");
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }

    /// HTTP/1.1 and h2 within [`Limits`].
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let limits = &self.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_header_timeout)
            .max_headers(H1_MAX_HEADERS)
            .max_buf_size(limits.max_header_bytes.max(8192) + 4096);
        let header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        let streams = limits.http2_max_streams_per_connection;
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(streams)
            .max_header_list_size(header_list)
            .initial_stream_window_size(H2_STREAM_BUFFER)
            .initial_connection_window_size(H2_STREAM_BUFFER.saturating_mul(streams.max(1)))
            .max_frame_size(H2_STREAM_BUFFER)
            .max_send_buf_size(H2_STREAM_BUFFER as usize)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        builder
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle_for(activity: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if activity.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        if tokio::time::timeout(timeout, activity.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One request of a connection in flight, until its response body is dropped.
struct Busy(Arc<watch::Sender<usize>>);

impl Busy {
    fn new(active: Arc<watch::Sender<usize>>) -> Self {
        active.send_modify(|n| *n += 1);
        Self(active)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A response body that keeps its connection busy (not idle) until it is dropped.
struct Counted<B> {
    body: B,
    _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
