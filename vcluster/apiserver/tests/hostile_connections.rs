//! What one client can do to the connection layer, each attack against its own server with
//! small limits: the server closes what it must and keeps answering everyone else.
//! Attackers connect from 127.0.0.2 so that they are another source than the clients they
//! must not starve (127.0.0.1).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Served;
use http::{Request, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use vcluster_apiserver::{Limits, Tenant};
use vcluster_testkit::clients::Kubectl;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Raw TLS connections to one tenant of a served test server.
struct Raw {
    config: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
    host: String,
    port: u16,
    token: String,
}

impl Raw {
    fn new(served: &Served, tenant: &Tenant) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(tenant.identity.ca_cert_pem().as_bytes())
            .expect("the CA certificate");
        roots.add(ca).expect("a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |alpn: &[u8]| {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        };
        let port = served
            .server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        Self {
            config: config(b"http/1.1"),
            h2: config(b"h2"),
            host: served.tenants.host(&tenant.name),
            port,
            token: tenant.identity.admin_token().to_owned(),
        }
    }

    async fn tcp(&self, source: Ipv4Addr) -> std::io::Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
            .await
    }

    async fn tls(&self, source: Ipv4Addr, h2: bool) -> std::io::Result<TlsStream<TcpStream>> {
        let config = if h2 { &self.h2 } else { &self.config };
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name = ServerName::try_from(self.host.clone()).expect("a server name");
        connector.connect(name, self.tcp(source).await?).await
    }

    /// An h2 connection whose streams may receive no data (a flow-control window of 0) until
    /// told otherwise.
    async fn stalled_h2(
        &self,
        source: Ipv4Addr,
    ) -> (
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tls = self.tls(source, true).await.expect("TLS");
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake(tls)
            .await
            .expect("h2 handshake");
        (client, tokio::spawn(connection))
    }

    /// Asks for a namespace as bob, from 127.0.0.1, until it is answered 200 (`None` if not
    /// within `within`): the statuses seen.
    async fn bob_until_answered(&self, within: Duration) -> Option<Vec<StatusCode>> {
        let (client, _connection) = self.stalled_h2(Ipv4Addr::LOCALHOST).await;
        let mut client = client.ready().await.expect("ready");
        let mut statuses = Vec::new();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let request = self.request("/api/v1/namespaces/default", Some("bob"));
            let (response, _) = client.send_request(request, true).expect("send");
            let status = response.await.expect("a response").status();
            statuses.push(status);
            if status == StatusCode::OK {
                return Some(statuses);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// A request as the tenant's admin (a super-user), or as `user` impersonated.
    fn request(&self, path: &str, user: Option<&str>) -> Request<()> {
        let mut request = Request::get(format!("https://{}{path}", self.host))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(user) = user {
            request = request.header("impersonate-user", user);
        }
        request.body(()).expect("a request")
    }
}

/// Runs `f` on a runtime of its own (the served one runs the server).
fn on_tokio<F: Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

/// Whether the server closes `stream` within `within` (a read sees its end or an error).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Asserts that the tenant answers a real kubectl from another source within 5 s.
fn others_are_answered(k: &Kubectl) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let run = k.run(&["get", "--raw", "/api/v1/namespaces/default"]);
        if run.ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "another client was not answered within 5 s: {}",
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn limits() -> Limits {
    Limits {
        read_header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[test]
fn slowloris_is_cut_off_by_the_read_header_timeout() {
    let (served, opened) = Served::start_limited(&["t"], limits());
    let raw = Raw::new(&served, &opened[0]);
    let kubeconfig = served.admin_kubeconfig(&opened[0]);
    let k = Kubectl::new("v36", &kubeconfig);
    on_tokio(async {
        // No TLS handshake at all.
        let mut silent = raw.tcp(ATTACKER).await.expect("connect");
        // A handshake, then headers a line every 200 ms, never ending.
        let tls = raw.tls(ATTACKER, false).await.expect("TLS");
        let (mut reader, mut writer) = tokio::io::split(tls);
        let trickle = tokio::spawn(async move {
            writer.write_all(b"GET /version HTTP/1.1\r\n").await?;
            for i in 0.. {
                tokio::time::sleep(Duration::from_millis(200)).await;
                writer.write_all(format!("x-{i}: y\r\n").as_bytes()).await?;
                writer.flush().await?;
            }
            std::io::Result::Ok(())
        });
        let k = Kubectl::new("v36", kubeconfig.clone());
        let other = tokio::task::spawn_blocking(move || others_are_answered(&k));
        assert!(
            closed_within(&mut silent, Duration::from_secs(15)).await,
            "a connection that never shook hands stayed open"
        );
        assert!(
            closed_within(&mut reader, Duration::from_secs(15)).await,
            "headers trickling in kept their connection open"
        );
        trickle.abort();
        other.await.expect("the other client");
    });
    others_are_answered(&k);
}

#[test]
fn idle_connections_are_closed() {
    let (served, opened) = Served::start_limited(&["t"], limits());
    let raw = Raw::new(&served, &opened[0]);
    on_tokio(async {
        // HTTP/1.1: one request answered, then nothing.
        let mut tls = raw.tls(ATTACKER, false).await.expect("TLS");
        let head = format!(
            "GET /version HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\r\n",
            raw.host, raw.token
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        let mut buf = [0u8; 4096];
        let n = tls.read(&mut buf).await.expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(
            closed_within(&mut tls, Duration::from_secs(15)).await,
            "an idle HTTP/1.1 connection stayed open"
        );

        // h2: one request answered, then nothing: a GOAWAY and the end of the connection.
        let tls = raw.tls(ATTACKER, true).await.expect("TLS");
        let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
        let connection = tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let (response, _) = client
            .send_request(raw.request("/version", None), true)
            .expect("send");
        let response = response.await.expect("a response");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let data = data.expect("data");
            body.flow_control()
                .release_capacity(data.len())
                .expect("release");
        }
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
        assert!(ended.is_ok(), "an idle h2 connection stayed open");
    });
}

#[test]
fn connections_past_the_per_source_cap_are_refused_while_another_source_is_served() {
    let (served, opened) = Served::start_limited(
        &["t"],
        Limits {
            max_connections_per_source: 4,
            ..Limits::default()
        },
    );
    let raw = Raw::new(&served, &opened[0]);
    let kubeconfig = served.admin_kubeconfig(&opened[0]);
    on_tokio(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(
                raw.tls(ATTACKER, false)
                    .await
                    .expect("a connection within the cap"),
            );
        }
        let past = raw.tls(ATTACKER, false).await;
        assert!(
            past.is_err(),
            "a fifth connection from one source was served"
        );
        let k = Kubectl::new("v36", kubeconfig.clone());
        tokio::task::spawn_blocking(move || others_are_answered(&k))
            .await
            .expect("the other client");
        drop(held);
        // Its connections gone, the source may connect again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while raw.tls(ATTACKER, false).await.is_err() {
            assert!(Instant::now() < deadline, "the source stayed refused");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Lets `user` do anything in the tenant (a ClusterRoleBinding to cluster-admin), so that
/// it is an authorized user who is not a super-user (`system:masters` is never refused).
fn bind_cluster_admin(k: &Kubectl, user: &str) {
    k.ok(&[
        "create",
        "clusterrolebinding",
        user,
        "--clusterrole=cluster-admin",
        &format!("--user={user}"),
    ]);
}

/// A server of one tenant within `limits`, the platform's (the default tenant, whose admin
/// is the process's super-user): raw connections to it, its admin's kubectl, and bob, a
/// cluster-admin who is not a super-user.
fn start_with_bob(limits: Limits) -> (Served, Arc<Tenant>, Raw, Kubectl) {
    let (served, mut opened) = Served::start_limited(&["t"], limits);
    let tenant = opened.remove(0);
    served.tenants.set_default(&tenant.name);
    let raw = Raw::new(&served, &tenant);
    let k = Kubectl::new("v36", served.admin_kubeconfig(&tenant));
    bind_cluster_admin(&k, "bob");
    (served, tenant, raw, k)
}

#[test]
fn requests_past_the_in_flight_limit_get_429_while_watches_and_super_users_pass() {
    let (_served, _tenant, raw, _k) = start_with_bob(Limits {
        max_requests_inflight: 2,
        ..Limits::default()
    });
    on_tokio(async {
        // Two reads whose client never reads their bodies hold both seats.
        let (client, connection) = raw.stalled_h2(ATTACKER).await;
        let mut client = client.ready().await.expect("ready");
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let (response, _) = client
                .send_request(raw.request("/api/v1/namespaces", Some("bob")), true)
                .expect("send");
            let response = response.await.expect("a response");
            assert_eq!(response.status(), StatusCode::OK);
            stalled.push(response);
        }

        let (other, other_connection) = raw.stalled_h2(Ipv4Addr::LOCALHOST).await;
        let mut other = other.ready().await.expect("ready");
        let mut send = |path: &str, user: Option<&str>| {
            other
                .send_request(raw.request(path, user), true)
                .expect("send")
                .0
        };
        // A watch is not counted.
        let watch = send("/api/v1/namespaces?watch=true", Some("bob"))
            .await
            .expect("watch");
        assert_eq!(watch.status(), StatusCode::OK);
        // A read past the limit: upstream's 429.
        let refused = send("/api/v1/namespaces/default", Some("bob"))
            .await
            .expect("a response");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "1");
        // The platform's super-user is answered all the same.
        let admin = send("/api/v1/namespaces/default", None)
            .await
            .expect("a response");
        assert_eq!(admin.status(), StatusCode::OK);
        other_connection.abort();

        // The stalled client goes: its seats are free again.
        drop((stalled, client));
        connection.abort();
        let statuses = raw.bob_until_answered(Duration::from_secs(5)).await;
        assert!(statuses.is_some(), "the seats stayed taken");
    });
}

/// Sends `n` reads of `path` on `client`, a connection that reads no body: their statuses,
/// and the responses (holding their seats) to keep.
async fn stalled_reads(
    raw: &Raw,
    client: h2::client::SendRequest<Bytes>,
    path: &str,
    n: usize,
) -> (Vec<StatusCode>, Vec<http::Response<h2::RecvStream>>) {
    let mut client = client.ready().await.expect("ready");
    let (mut statuses, mut responses) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (response, _) = client
            .send_request(raw.request(path, None), true)
            .expect("send");
        let response = response.await.expect("a response");
        statuses.push(response.status());
        responses.push(response);
    }
    (statuses, responses)
}

#[test]
fn a_tenants_stalled_clients_cannot_take_another_tenants_seats() {
    // Four seats for the process, two for each tenant.
    let (served, opened) = Served::start_limited(
        &["platform", "a", "b"],
        Limits {
            max_requests_inflight: 4,
            max_requests_inflight_per_tenant: 2,
            ..Limits::default()
        },
    );
    served.tenants.set_default("platform");
    let [platform, a, b] = [0, 1, 2].map(|i| Raw::new(&served, &opened[i]));
    on_tokio(async {
        // Tenant a's admin, a super-user of a alone, asks four times and reads nothing: two
        // seats are its tenant's share, the rest are refused.
        let (client, connection) = a.stalled_h2(ATTACKER).await;
        let (statuses, _held) = stalled_reads(&a, client, "/api/v1/namespaces", 4).await;
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::OK, too_many, too_many],
            "a tenant's admin is held to its tenant's share"
        );
        // Tenant b still has the seats a could not take: its admin takes them.
        let (client, b_connection) = b.stalled_h2(Ipv4Addr::LOCALHOST).await;
        let (statuses, _b_held) = stalled_reads(&b, client, "/api/v1/namespaces", 2).await;
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
        // Every seat is taken now, and the platform's admin is answered all the same.
        let (client, platform_connection) = platform.stalled_h2(Ipv4Addr::LOCALHOST).await;
        let (statuses, _) = stalled_reads(&platform, client, "/api/v1/namespaces", 1).await;
        assert_eq!(statuses, [StatusCode::OK]);
        for connection in [connection, b_connection, platform_connection] {
            connection.abort();
        }
    });
}

#[test]
fn a_response_its_client_does_not_read_is_ended_at_the_request_timeout() {
    let (_served, _tenant, raw, _k) = start_with_bob(Limits {
        max_requests_inflight: 1,
        request_timeout: Duration::from_secs(2),
        ..Limits::default()
    });
    on_tokio(async {
        let (client, _connection) = raw.stalled_h2(ATTACKER).await;
        let mut client = client.ready().await.expect("ready");
        let (response, _) = client
            .send_request(raw.request("/api/v1/namespaces", Some("bob")), true)
            .expect("send");
        let stalled = response.await.expect("a response");
        assert_eq!(stalled.status(), StatusCode::OK);

        // The stalled client stays connected; past the request timeout its seat is free.
        let statuses = raw
            .bob_until_answered(Duration::from_secs(10))
            .await
            .expect("the unread response kept its seat past the request timeout");
        assert_eq!(
            statuses[0],
            StatusCode::TOO_MANY_REQUESTS,
            "the unread response did not hold its seat before its deadline"
        );
        drop(stalled);
    });
}

/// The process's resident memory, in bytes.
fn resident() -> u64 {
    vcluster_testkit::memory_kib(None, "VmRSS").expect("VmRSS") << 10
}

/// About 1.3 MB of ConfigMaps in the default namespace: the path of their LIST, and its
/// size.
fn big_list(k: &Kubectl) -> (&'static str, usize) {
    let value = "x".repeat(13 << 10);
    let manifests: String = (0..100)
        .map(|i| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-{i}\ndata:\n  v: {value}\n")
        })
        .collect();
    let applied = k.run_with(&["apply", "-f", "-"], Some(&manifests));
    assert!(applied.ok, "{}", applied.stderr);
    let path = "/api/v1/namespaces/default/configmaps";
    let size = k.ok(&["get", "--raw", path]).len();
    assert!(size > 1_300_000);
    (path, size)
}

#[test]
fn responses_past_the_unsent_bytes_budget_get_429_until_their_clients_read() {
    let (served, tenant, raw, k) = start_with_bob(Limits::default());
    let (path, size) = big_list(&k);
    drop((raw, k, served, tenant));
    // A server of the same objects whose budget holds two of their LISTs, not three.
    let (_served, _tenant, raw, k) = start_with_bob(Limits {
        max_unsent_response_bytes: size * 5 / 2,
        ..Limits::default()
    });
    big_list(&k);
    on_tokio(async {
        let (client, connection) = raw.stalled_h2(ATTACKER).await;
        let mut client = client.ready().await.expect("ready");
        let mut statuses = Vec::new();
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let (response, _) = client
                .send_request(raw.request(path, Some("bob")), true)
                .expect("send");
            let response = response.await.expect("a response");
            statuses.push(response.status());
            stalled.push(response);
        }
        // Two unread LISTs fit; the third does not.
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        assert_eq!(stalled[2].headers()["retry-after"], "1");
        // Counted as the 429 it was.
        let metrics = k.ok(&["get", "--raw", "/metrics"]);
        let refused = metrics.lines().any(|line| {
            line.starts_with("apiserver_request_total{")
                && line.contains(r#"verb="LIST""#)
                && line.contains(r#"resource="configmaps""#)
                && line.contains(r#"code="429""#)
        });
        assert!(refused, "no LIST of configmaps counted as a 429");
        // The client goes: its bytes are free again.
        drop((stalled, client));
        connection.abort();
        let (client, _connection) = raw.stalled_h2(Ipv4Addr::LOCALHOST).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut client = client.clone().ready().await.expect("ready");
            let (response, _) = client
                .send_request(raw.request(path, Some("bob")), true)
                .expect("send");
            if response.await.expect("a response").status() == StatusCode::OK {
                break;
            }
            assert!(Instant::now() < deadline, "the unsent bytes stayed taken");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn stalled_h2_streams_of_a_big_list_hold_bounded_memory() {
    let (served, tenant, raw, k) = start_with_bob(Limits {
        max_requests_inflight: 40,
        http2_max_streams_per_connection: 20,
        ..Limits::default()
    });
    let (path, _) = big_list(&k);

    let (before, during) = on_tokio(async {
        let before = resident();
        // Three connections, each asking for the LIST 200 times and reading nothing.
        let mut attackers = Vec::new();
        for _ in 0..3 {
            let (client, connection) = raw.stalled_h2(ATTACKER).await;
            let (raw_host, token) = (raw.host.clone(), raw.token.clone());
            attackers.push(connection);
            attackers.push(tokio::spawn(async move {
                let mut client = client;
                let mut responses = Vec::new();
                for _ in 0..200 {
                    client = client.ready().await?;
                    let request = Request::get(format!("https://{raw_host}{path}"))
                        .header("authorization", format!("Bearer {token}"))
                        .header("impersonate-user", "bob")
                        .body(())
                        .expect("a request");
                    let (response, _) = client.send_request(request, true)?;
                    responses.push(tokio::spawn(response));
                }
                std::future::pending::<()>().await;
                drop(responses);
                Ok(())
            }));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let during = resident();
        let kubeconfig = served.admin_kubeconfig(&tenant);
        tokio::task::spawn_blocking(move || others_are_answered(&Kubectl::new("v36", kubeconfig)))
            .await
            .expect("the other client");
        for attacker in attackers {
            attacker.abort();
        }
        (before, during)
    });
    let grown = during.saturating_sub(before);
    eprintln!(
        "resident memory: {} MiB before, {} MiB under 3 x 200 stalled streams of a {} KiB LIST",
        before >> 20,
        during >> 20,
        (100 * 13) + 1
    );
    // 40 seats of 1.3 MB each, and what serializing takes; unbounded, 600 streams took
    // several times this.
    assert!(
        grown < 200 << 20,
        "stalled streams grew the process by {} MiB",
        grown >> 20
    );
    others_are_answered(&k);
}

#[test]
fn oversized_headers_get_431_while_large_real_ones_pass() {
    let (_served, _tenant, raw, k) = start_with_bob(Limits::default());
    // kubectl (h2) with a 64 KiB bearer token, and as bob with 150 groups (150
    // Impersonate-Group headers).
    let token = "t".repeat(64 << 10);
    let big = k.run(&[
        "--token",
        &token,
        "get",
        "--raw",
        "/api/v1/namespaces/default",
    ]);
    // The token is judged (and, made up, refused), not its header.
    assert!(
        !big.ok && big.stderr.contains("(Unauthorized)"),
        "a 64 KiB token: {}",
        big.stderr
    );
    let mut args = vec!["--as=bob".to_owned()];
    args.extend((0..150).map(|i| format!("--as-group=group-{i}")));
    args.extend(["get", "namespace", "default", "-o", "name"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(k.ok(&args).trim(), "namespace/default");

    on_tokio(async {
        let h1 = async |extra: String| {
            let mut tls = raw.tls(ATTACKER, false).await.expect("TLS");
            let head = format!(
                "GET /api/v1/namespaces/default HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n{extra}connection: close\r\n\r\n",
                raw.host, raw.token
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        };
        // HTTP/1.1 with 300 headers is served.
        let many: String = (0..300).map(|i| format!("x-header-{i}: {i}\r\n")).collect();
        let answer = h1(many).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "300 headers: {answer:.200}"
        );
        // Past 1 MiB: 431.
        let huge = format!("x-huge: {}\r\n", "h".repeat(2 << 20));
        let answer = h1(huge).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "2 MiB of headers: {answer:.200}"
        );

        // h2 past 1 MiB: 431 too.
        let tls = raw.tls(ATTACKER, true).await.expect("TLS");
        let (client, connection) = h2::client::Builder::new()
            .max_header_list_size(u32::MAX)
            .handshake::<_, Bytes>(tls)
            .await
            .expect("h2 handshake");
        let _connection = tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let mut request = raw.request("/api/v1/namespaces/default", None);
        request.headers_mut().insert(
            "x-huge",
            "h".repeat(2 << 20).parse().expect("a header value"),
        );
        let (response, _) = client.send_request(request, true).expect("send");
        let response = response.await.expect("a response");
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    });
    others_are_answered(&k);
}
