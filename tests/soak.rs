//! The soak: one `vcluster up`, two tenants. For a fixed time one tenant is attacked from
//! other loopback addresses, by every attack issue 12 found at once (idle TCP connections
//! past the per-source cap, slowloris TLS connections trickling headers, oversized,
//! malformed, too deep and mistyped bodies, JSON-patch copy bombs, and h2 connections whose
//! streams ask for a large LIST with a flow-control window the client never opens), while the
//! other tenant's client creates and reads objects. The quiet tenant must see no error and
//! be answered within a generous bound, no attack may get a 5xx, the process's memory stays
//! under a bound, and the attacked tenant's objects are still readable by a typed client
//! afterwards.
//!
//! Both are ordinary tenants, their admins super-users of their own tenant only; the
//! process's default tenant, the platform's, is a third that takes no part.
//!
//! The quiet tenant's latencies, alone and under attack, and the peak memory are printed
//! (the README records them); they are figures, not assertions. `VCLUSTER_SOAK_SECONDS`
//! sets the length of each phase (default 20); `VCLUSTER_SOAK_ATTACKS` (a comma-separated
//! list of `idle`, `slowloris`, `bodies`, `bombs` and `streams`) runs only those attacks,
//! to measure what each costs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use vcluster_tests::raw::Endpoint;
use vcluster_tests::{StoreKind, Up};

/// Where the idle connections come from; the other attacks come from [`ATTACKER`], and the
/// quiet tenant's client from 127.0.0.1.
const IDLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The process's resident memory stays under this during the soak.
const RSS_BOUND_MIB: u64 = 1024;

/// Every operation of the quiet tenant is answered within this, attacked or not: a bound
/// on being served at all, far above any latency figure (those are printed, not asserted),
/// with room for a debug build on two shared cores. The attacked tenant cannot hold more
/// than its share of the in-flight seats, and the stalled streams' LISTs are answered from
/// the watch cache's encoded objects rather than read and encoded each.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

/// Whether the attack named `name` runs (every attack unless `VCLUSTER_SOAK_ATTACKS` says).
fn attacking(name: &str) -> bool {
    std::env::var("VCLUSTER_SOAK_ATTACKS")
        .map_or(true, |names| names.split(',').any(|n| n.trim() == name))
}

fn phase() -> Duration {
    let seconds = std::env::var("VCLUSTER_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds)
}

async fn client(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn config_map(name: &str, value: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_owned(), value)])),
        ..Default::default()
    }
}

/// What the quiet tenant's client saw in one phase.
struct Seen {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

impl Seen {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    }
}

/// Four tasks, each creating a ConfigMap and reading it back, for `run_for`: the latency of
/// every operation, and every error.
async fn workload(client: &Client, phase_name: &str, run_for: Duration) -> Seen {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut tasks = JoinSet::new();
    for task in 0..4 {
        let config_maps = config_maps.clone();
        let phase_name = phase_name.to_owned();
        tasks.spawn(async move {
            let mut seen = Seen {
                latencies: Vec::new(),
                errors: Vec::new(),
            };
            let start = Instant::now();
            let mut i = 0;
            while start.elapsed() < run_for {
                let name = format!("{phase_name}-{task}-{i}");
                i += 1;
                let began = Instant::now();
                let created = config_maps
                    .create(&PostParams::default(), &config_map(&name, "x".repeat(64)))
                    .await;
                seen.latencies.push(began.elapsed());
                if let Err(e) = created {
                    seen.errors.push(format!("create {name}: {e}"));
                    continue;
                }
                let began = Instant::now();
                let read = config_maps.get(&name).await;
                seen.latencies.push(began.elapsed());
                if let Err(e) = read {
                    seen.errors.push(format!("get {name}: {e}"));
                }
            }
            seen
        });
    }
    let mut all = Seen {
        latencies: Vec::new(),
        errors: Vec::new(),
    };
    while let Some(seen) = tasks.join_next().await {
        let seen = seen.expect("workload task");
        all.latencies.extend(seen.latencies);
        all.errors.extend(seen.errors);
    }
    all
}

/// The answers the attacks got, by kind: a 5xx is a failure of the server.
#[derive(Default)]
struct Answers {
    server_errors: std::sync::Mutex<Vec<String>>,
    answered: AtomicU64,
}

impl Answers {
    fn record(&self, what: &str, code: Option<u16>) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if let Some(code) = code.filter(|c| *c >= 500) {
            let mut errors = self.server_errors.lock().expect("lock");
            errors.push(format!("{what}: {code}"));
        }
    }
}

/// Plain TCP connections that never start TLS, kept open (reopened when the server closes
/// them) until `stop`.
async fn idle_connections(endpoint: Endpoint, stop: Arc<AtomicBool>) {
    let mut open = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while open.len() < 600 {
            match endpoint.tcp(IDLER).await {
                Ok(tcp) => open.push(tcp),
                // The test process's own descriptors, or the listener's backlog: hold what
                // is open and try again later.
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Drop the ones the server has closed (a read of zero bytes).
        let mut kept = Vec::new();
        for tcp in open.drain(..) {
            let mut byte = [0u8; 1];
            match tcp.try_read(&mut byte) {
                Ok(0) => {}
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {}
                _ => kept.push(tcp),
            }
        }
        open = kept;
    }
}

/// TLS connections that send a request's headers one byte a second.
async fn slowloris(endpoint: Endpoint, stop: Arc<AtomicBool>) {
    let head = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tls) = endpoint.tls(ATTACKER).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for byte in head.iter().cycle() {
            if stop.load(Ordering::Relaxed) || tls.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Bodies no server may store or choke on, one after another.
async fn bad_bodies(endpoint: Endpoint, answers: Arc<Answers>, stop: Arc<AtomicBool>) {
    let config_maps = "/api/v1/namespaces/default/configmaps";
    let deep = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let nested = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"nested"}},"x":{}{}}}"#,
        r#"{"a":"#.repeat(124),
        "}".repeat(124)
    );
    let oversized = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"v":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let bodies: Vec<(&str, String)> = vec![
        ("oversized", oversized),
        ("malformed", r#"{"apiVersion":"v1","kind":"#.to_owned()),
        ("too deep", deep),
        ("deeply nested unknown field", nested),
        (
            "mistyped",
            r#"{"kind":"ConfigMap","apiVersion":"v1","data":{"a":1},"metadata":{"name":"t","labels":"x"}}"#
                .to_owned(),
        ),
    ];
    while !stop.load(Ordering::Relaxed) {
        for (what, body) in &bodies {
            let code = endpoint
                .request(
                    ATTACKER,
                    "POST",
                    config_maps,
                    "application/json",
                    body.as_bytes(),
                )
                .await;
            answers.record(what, code);
        }
    }
}

/// A JSON patch whose copies double a subtree at each step, ending in a failing test.
fn copy_bomb() -> String {
    let mut ops = vec![
        r#"{"op":"add","path":"/data/a","value":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.to_owned(),
    ];
    ops.push(r#"{"op":"add","path":"/metadata/annotations","value":{}}"#.to_owned());
    ops.push(r#"{"op":"add","path":"/metadata/annotations/l0","value":{"a":"xxxxxxxxxxxxxxxx","b":"xxxxxxxxxxxxxxxx"}}"#.to_owned());
    for level in 1..40 {
        ops.push(format!(
            r#"{{"op":"copy","from":"/metadata/annotations/l{}","path":"/metadata/annotations/l{level}"}}"#,
            level - 1
        ));
        ops.push(format!(
            r#"{{"op":"copy","from":"/metadata/annotations/l{}","path":"/metadata/annotations/l{level}/c"}}"#,
            level - 1
        ));
    }
    ops.push(r#"{"op":"test","path":"/data/a","value":"no"}"#.to_owned());
    format!("[{}]", ops.join(","))
}

async fn patch_bombs(endpoint: Endpoint, answers: Arc<Answers>, stop: Arc<AtomicBool>) {
    let bomb = copy_bomb();
    let path = "/api/v1/namespaces/default/configmaps/target";
    while !stop.load(Ordering::Relaxed) {
        let code = endpoint
            .request(
                ATTACKER,
                "PATCH",
                path,
                "application/json-patch+json",
                bomb.as_bytes(),
            )
            .await;
        answers.record("JSON-patch copy bomb", code);
    }
}

/// h2 connections whose streams each ask for the large namespace's ConfigMaps and never
/// open their flow-control window: the server cannot send a byte of the bodies.
async fn stalled_streams(endpoint: Endpoint, answers: Arc<Answers>, stop: Arc<AtomicBool>) {
    let mut held = Vec::new();
    for _ in 0..3 {
        let Ok(tls) = endpoint.h2_tls(ATTACKER).await else {
            continue;
        };
        let Ok((client, connection)) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, bytes::Bytes>(tls)
            .await
        else {
            continue;
        };
        tokio::spawn(connection);
        for _ in 0..200 {
            let request = http::Request::get(format!(
                "https://{}/api/v1/namespaces/big/configmaps",
                endpoint.addr
            ))
            .body(())
            .expect("a request");
            let Ok(Ok(mut ready)) =
                tokio::time::timeout(Duration::from_secs(1), client.clone().ready()).await
            else {
                // The server's stream limit: the rest wait, as they should.
                break;
            };
            let Ok((response, _)) = ready.send_request(request, true) else {
                break;
            };
            let answers = answers.clone();
            held.push(tokio::spawn(async move {
                if let Ok(response) = response.await {
                    answers.record("stalled h2 stream", Some(response.status().as_u16()));
                    // Hold the body unread.
                    let body = response.into_body();
                    std::future::pending::<()>().await;
                    drop(body);
                }
            }));
        }
        held.push(tokio::spawn(async move {
            let _client = client;
            std::future::pending::<()>().await;
        }));
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in held {
        task.abort();
    }
}

/// The largest resident set of process `pid` seen until `stop`, in MiB.
async fn peak_rss(pid: u32, stop: Arc<AtomicBool>) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(kib) = vcluster_testkit::memory_kib(Some(pid), "VmRSS") {
            peak = peak.max(kib / 1024);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_is_served_while_another_is_attacked() {
    let up = tokio::task::spawn_blocking(|| {
        Up::start(StoreKind::Embedded, &["platform", "attacked", "quiet"], 0)
    })
    .await
    .expect("start vcluster up");
    let attacked_kubeconfig = up.tenant("attacked").kubeconfig().to_owned();
    let attacked = Endpoint::of(&attacked_kubeconfig);
    let attacked_client = client(&attacked_kubeconfig).await;
    let quiet = client(up.tenant("quiet").kubeconfig()).await;

    // The attacked tenant's large namespace (about 1.3 MB of ConfigMaps) and the object
    // the patch bombs aim at.
    let namespaces: Api<Namespace> = Api::all(attacked_client.clone());
    let big = Namespace {
        metadata: ObjectMeta {
            name: Some("big".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &big)
        .await
        .expect("namespace big");
    let in_big: Api<ConfigMap> = Api::namespaced(attacked_client.clone(), "big");
    for i in 0..130 {
        in_big
            .create(
                &PostParams::default(),
                &config_map(&format!("cm-{i}"), "y".repeat(10_000)),
            )
            .await
            .expect("a large ConfigMap");
    }
    Api::<ConfigMap>::namespaced(attacked_client.clone(), "default")
        .create(&PostParams::default(), &config_map("target", "t".into()))
        .await
        .expect("the patch target");

    let alone = workload(&quiet, "alone", phase()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let rss = tokio::spawn(peak_rss(up.pid(), stop.clone()));
    // The attackers are other clients: they run on threads of their own, so that their work
    // in this process does not delay the quiet client's tasks before the server sees them.
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the attackers' runtime");
    let on = attackers.handle();
    let mut attacks = JoinSet::new();
    if attacking("idle") {
        attacks.spawn_on(idle_connections(attacked.clone(), stop.clone()), on);
    }
    for _ in 0..20 {
        if attacking("slowloris") {
            attacks.spawn_on(slowloris(attacked.clone(), stop.clone()), on);
        }
    }
    for _ in 0..2 {
        if attacking("bodies") {
            attacks.spawn_on(
                bad_bodies(attacked.clone(), answers.clone(), stop.clone()),
                on,
            );
        }
        if attacking("bombs") {
            attacks.spawn_on(
                patch_bombs(attacked.clone(), answers.clone(), stop.clone()),
                on,
            );
        }
    }
    if attacking("streams") {
        attacks.spawn_on(
            stalled_streams(attacked.clone(), answers.clone(), stop.clone()),
            on,
        );
    }
    // Let the attacks take hold before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attacked_phase = workload(&quiet, "attacked", phase()).await;
    stop.store(true, Ordering::Relaxed);
    while attacks.join_next().await.is_some() {}
    attackers.shutdown_background();
    let peak = rss.await.expect("rss sampler");

    println!(
        "soak: quiet tenant alone: {} operations, p50 {:?}, p99 {:?}; while the other is attacked: \
         {} operations, p50 {:?}, p99 {:?} ({:.2}x), slowest {:?}; {} attack answers; peak RSS {peak} MiB",
        alone.latencies.len(),
        alone.percentile(0.5),
        alone.percentile(0.99),
        attacked_phase.latencies.len(),
        attacked_phase.percentile(0.5),
        attacked_phase.percentile(0.99),
        attacked_phase.percentile(0.99).as_secs_f64() / alone.percentile(0.99).as_secs_f64(),
        attacked_phase.percentile(1.0),
        answers.answered.load(Ordering::Relaxed),
    );
    assert!(alone.errors.is_empty(), "errors alone: {:?}", alone.errors);
    assert!(
        attacked_phase.errors.is_empty(),
        "the quiet tenant saw errors while the other was attacked: {:?}",
        &attacked_phase.errors[..attacked_phase.errors.len().min(10)]
    );
    let slowest = attacked_phase.percentile(1.0);
    assert!(
        slowest < ANSWERED_WITHIN,
        "the quiet tenant waited {slowest:?} for an answer while the other was attacked"
    );
    let server_errors = answers.server_errors.lock().expect("lock").clone();
    assert!(
        server_errors.is_empty(),
        "attacks got server errors: {:?}",
        &server_errors[..server_errors.len().min(10)]
    );
    let answering = ["bodies", "bombs", "streams"].into_iter().any(attacking);
    assert!(
        !answering || answers.answered.load(Ordering::Relaxed) > 0,
        "no attack was answered at all"
    );
    assert!(
        peak < RSS_BOUND_MIB,
        "the process grew to {peak} MiB (bound {RSS_BOUND_MIB} MiB)"
    );
    // Nothing the attacks sent made the attacked tenant's objects unreadable to a typed
    // client.
    let all: Api<ConfigMap> = Api::all(attacked_client);
    let listed = all
        .list(&ListParams::default())
        .await
        .expect("a typed LIST");
    assert!(
        listed.items.len() >= 131,
        "{} ConfigMaps",
        listed.items.len()
    );
}
