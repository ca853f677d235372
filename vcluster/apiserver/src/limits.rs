//! What one client may hold of the process: connections, requests in flight, time and
//! header bytes, as kube-apiserver bounds them (Go's `net/http` and `x/net/http2` as
//! `secure_serving.go` configures them, the max-in-flight filter and `--request-timeout`).
//!
//! [`Limits`] is the typed configuration [`crate::serve`] takes; its [`Default`] is
//! kube-apiserver's defaults, with the connection caps sized to the process's open-file
//! limit (kube-apiserver has none; without them, idle connections exhaust the file
//! descriptors every tenant needs).

use std::time::Duration;

/// The bounds the server keeps every client within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests other than watches and streams (get, list, discovery) answered at once;
    /// past it a 429 (`--max-requests-inflight`, 400). `0`: no limit.
    pub max_requests_inflight: usize,
    /// Mutating requests answered at once; past it a 429
    /// (`--max-mutating-requests-inflight`, 200). `0`: no limit.
    pub max_mutating_requests_inflight: usize,
    /// How many of [`Self::max_requests_inflight`] one tenant may hold at once; past it a
    /// 429, so that one tenant's requests (its clients that stop reading, its admin
    /// included) cannot take the seats of the others (a quarter of them, 100). Not one of
    /// kube-apiserver's, whose one tenant is the cluster. `0`: no share.
    pub max_requests_inflight_per_tenant: usize,
    /// How many of [`Self::max_mutating_requests_inflight`] one tenant may hold at once
    /// (a quarter of them, 50). `0`: no share.
    pub max_mutating_requests_inflight_per_tenant: usize,
    /// How long a request other than a watch or a stream may take, sending its response
    /// included, before it is ended: a 504 if nothing was sent yet, else its stream is
    /// reset (`--request-timeout`, 60 s).
    pub request_timeout: Duration,
    /// How long a client may take for the TLS handshake and then for each request's
    /// headers (Go's `ReadHeaderTimeout` as kube-apiserver sets it, 32 s; Go also bounds
    /// the handshake by it). An HTTP/1.1 connection waiting for its next request is
    /// closed after it too.
    pub read_header_timeout: Duration,
    /// How long a connection with no request in flight stays open (Go's `IdleTimeout` as
    /// kube-apiserver sets it, 90 s); an HTTP/2 connection then gets a GOAWAY.
    pub idle_timeout: Duration,
    /// The largest request head: the request line and headers over HTTP/1.1, the header
    /// list over HTTP/2 (Go's `MaxHeaderBytes` as kube-apiserver sets it, 1 MiB); past it
    /// a 431.
    pub max_header_bytes: usize,
    /// Streams one HTTP/2 connection may have open at once
    /// (`--http2-max-streams-per-connection`; kube-apiserver's default, 100).
    pub http2_max_streams_per_connection: u32,
    /// Bytes of response bodies (other than watches and streams) held at once for clients
    /// that have not read them yet; a response that does not fit is a 429. Not one of
    /// kube-apiserver's (Go writes each response into the connection as it is made); here
    /// a response is made whole first, so this is what bounds their memory (256 MiB).
    /// `0`: no limit.
    pub max_unsent_response_bytes: usize,
    /// Connections open at once, from every source; one past it is closed at once.
    pub max_connections: usize,
    /// Connections open at once from one source address, so that one client cannot take
    /// every connection.
    pub max_connections_per_source: usize,
}

/// Open files kept free of client connections: the store's files, etcd connections, the
/// runtime's own descriptors and the brief descriptor a refused connection takes.
const RESERVED_FILES: u64 = 64;

impl Default for Limits {
    fn default() -> Self {
        let files = open_files_limit();
        // A tenth of the descriptors, at least RESERVED_FILES, stays free for the rest of
        // the process.
        let connections = files
            .saturating_sub((files / 10).max(RESERVED_FILES))
            .max(1);
        let connections = usize::try_from(connections).unwrap_or(usize::MAX);
        Self {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            max_requests_inflight_per_tenant: 100,
            max_mutating_requests_inflight_per_tenant: 50,
            request_timeout: Duration::from_secs(60),
            read_header_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            max_header_bytes: 1 << 20,
            http2_max_streams_per_connection: 100,
            max_unsent_response_bytes: 256 << 20,
            max_connections: connections,
            max_connections_per_source: (connections / 4).max(1),
        }
    }
}

/// The process's soft limit on open files.
fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft limit on open files to the hard one, as Go's runtime does at start, so
/// that the connection caps of [`Limits::default`] follow what the system allows; the
/// limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// A warning said at most once every ten seconds, however often its cause recurs (a
/// flood of refused connections or failing accepts must not become a flood of log lines).
pub(crate) struct Throttled(std::sync::Mutex<(Option<std::time::Instant>, u64)>);

impl Throttled {
    pub(crate) const fn new() -> Self {
        Self(std::sync::Mutex::new((None, 0)))
    }

    /// Whether to log now: `Some` with how many occurrences went unlogged since the last
    /// line, or `None` (this one is counted, to be told next time).
    pub(crate) fn check(&self) -> Option<u64> {
        const EVERY: Duration = Duration::from_secs(10);
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (last, unlogged) = &mut *state;
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(unlogged))
    }
}
