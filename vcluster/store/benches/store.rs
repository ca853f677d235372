//! The store benchmark: `cargo bench -p vcluster-store --bench store`.
//!
//! For both backends, at 1 and 64 concurrent clients: durable creates/s, gets/s, prefix
//! ranges/s, and watch delivery latency; beside them, in the same run against the same etcd,
//! the raw `etcd-client` put rate, which bounds what the etcd backend can reach. Prints a
//! Markdown table (copied into the README) with the ratios the targets are stated in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use vcluster_store::{
    Embedded, EmbeddedOptions, Etcd, EtcdOptions, RangeRequest, Revision, Scoped, Store,
};
use vcluster_testkit::{EtcdCluster, rate};

const RUN_FOR: Duration = Duration::from_secs(3);
const VALUE: [u8; 512] = [b'v'; 512];

/// Runs `op` from `clients` concurrent tasks for `RUN_FOR`; returns operations per second.
struct Figures {
    puts: [f64; 2],
    gets: [f64; 2],
    ranges: [f64; 2],
    watch_p50_ms: f64,
    watch_p99_ms: f64,
}

const CLIENTS: [usize; 2] = [1, 64];
const KEYS: u64 = 10_000;

async fn measure(name: &str, store: Arc<dyn Store>) -> Figures {
    let run = format!("{name}-{}", std::process::id());
    let mut puts = [0.0; 2];
    for (i, clients) in CLIENTS.into_iter().enumerate() {
        let (s, run) = (store.clone(), run.clone());
        puts[i] = rate(clients, RUN_FOR, move |c, n| {
            let s = s.clone();
            let key = Bytes::from(format!("/bench/{run}/put{clients}/{c}/{n}"));
            async move {
                s.create(key, Bytes::from_static(&VALUE), None)
                    .await
                    .expect("create");
            }
        })
        .await;
        eprintln!("{name}: {clients} writers: {:.0} creates/s", puts[i]);
    }

    // A fixed keyspace for reads: KEYS objects, and a prefix of 100 for ranges.
    let base = format!("/bench/{run}/read/");
    let fill: Vec<_> = (0..64u64)
        .map(|c| {
            let (s, base) = (store.clone(), base.clone());
            tokio::spawn(async move {
                for k in (c..KEYS).step_by(64) {
                    let key = Bytes::from(format!("{base}{:02}/{k:05}", k % 100));
                    s.create(key, Bytes::from_static(&VALUE), None)
                        .await
                        .expect("fill");
                }
            })
        })
        .collect();
    for f in fill {
        f.await.expect("fill task");
    }
    let mut gets = [0.0; 2];
    let mut ranges = [0.0; 2];
    for (i, clients) in CLIENTS.into_iter().enumerate() {
        let (s, b) = (store.clone(), base.clone());
        gets[i] = rate(clients, RUN_FOR, move |c, n| {
            let s = s.clone();
            let k = (c * 7919 + n * 104_729) % KEYS;
            let key = format!("{b}{:02}/{k:05}", k % 100);
            async move {
                s.get(key.as_bytes()).await.expect("get").expect("present");
            }
        })
        .await;
        let (s, b) = (store.clone(), base.clone());
        ranges[i] = rate(clients, RUN_FOR, move |c, n| {
            let s = s.clone();
            let prefix = Bytes::from(format!("{b}{:02}/", (c + n) % 100));
            async move {
                let page = s.range(RangeRequest::prefix(prefix)).await.expect("range");
                assert_eq!(page.kvs.len(), 100);
            }
        })
        .await;
        eprintln!(
            "{name}: {clients} readers: {:.0} gets/s, {:.0} ranges/s",
            gets[i], ranges[i]
        );
    }

    let (watch_p50_ms, watch_p99_ms) = watch_latency(&store, &run).await;
    eprintln!("{name}: watch delivery p50 {watch_p50_ms:.3} ms, p99 {watch_p99_ms:.3} ms");
    Figures {
        puts,
        gets,
        ranges,
        watch_p50_ms,
        watch_p99_ms,
    }
}

/// From a write's acknowledgement to its event reaching a watcher, over 2,000 writes made
/// one after another (a watcher may see an event before its writer sees the
/// acknowledgement; that counts as zero).
async fn watch_latency(store: &Arc<dyn Store>, run: &str) -> (f64, f64) {
    let prefix = format!("/bench/{run}/watch/");
    let start = store.current_revision().await.expect("revision");
    let mut stream = store.watch(prefix.as_bytes(), start).await.expect("watch");
    const N: usize = 2000;
    let receiver = tokio::spawn(async move {
        let mut seen = HashMap::with_capacity(N);
        while seen.len() < N {
            let event = stream.next().await.expect("stream open").expect("event");
            seen.insert(event.revision(), Instant::now());
        }
        seen
    });
    let mut acked: Vec<(Revision, Instant)> = Vec::with_capacity(N);
    for i in 0..N {
        let key = Bytes::from(format!("{prefix}{i}"));
        let kv = store
            .create(key, Bytes::from_static(&VALUE), None)
            .await
            .expect("create");
        acked.push((kv.mod_revision, Instant::now()));
    }
    let seen = receiver.await.expect("watcher");
    let mut latencies: Vec<f64> = acked
        .iter()
        .map(|(rev, at)| {
            let got = seen.get(rev).expect("every write watched");
            got.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    (pct(0.50), pct(0.99))
}

/// The raw `etcd-client` rate of plain puts (`cas: false`) or of the compare-and-swap
/// create every Kubernetes create is (`cas: true`: a transaction that puts the key only if
/// its create revision is 0, as kube-apiserver sends it).
async fn raw_etcd(endpoints: &[String], clients: usize, cas: bool) -> f64 {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let client = etcd_client::Client::connect(endpoints, None)
        .await
        .expect("connect");
    let run = std::process::id();
    rate(clients, RUN_FOR, move |c, n| {
        let mut kv = client.kv_client();
        let key = format!("/bench-raw/{run}/{cas}/{clients}/{c}/{n}");
        async move {
            if cas {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, VALUE.to_vec(), None)]);
                kv.txn(txn).await.expect("raw txn");
            } else {
                kv.put(key, VALUE.to_vec(), None).await.expect("raw put");
            }
        }
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let embedded: Arc<dyn Store> = Arc::new(
        Embedded::open(dir.path().join("bench.redb"), EmbeddedOptions::default())
            .expect("open embedded store"),
    );
    let e = measure("embedded", embedded).await;

    if std::env::var("ONLY_EMBEDDED").is_ok() {
        return;
    }
    let etcd_cluster = EtcdCluster::single();
    let endpoints = etcd_cluster.endpoints();
    let mut raw = [0.0; 2];
    let mut raw_cas = [0.0; 2];
    for (i, clients) in CLIENTS.into_iter().enumerate() {
        raw[i] = raw_etcd(&endpoints, clients, false).await;
        raw_cas[i] = raw_etcd(&endpoints, clients, true).await;
        eprintln!(
            "raw etcd-client, {clients} writers: {:.0} puts/s, {:.0} CAS creates/s",
            raw[i], raw_cas[i]
        );
    }
    let backend = Arc::new(
        Etcd::connect(EtcdOptions::new(endpoints))
            .await
            .expect("connect"),
    );
    // Measured through a tenant's scoped view, the way the API server uses it.
    let tenant: Arc<dyn Store> = Arc::new(Scoped::tenant(backend, "bench").expect("tenant"));
    let d = measure("etcd", tenant).await;

    println!(
        "| figure (2 cores, loopback) | embedded | etcd backend | raw etcd-client put | raw etcd-client CAS create |"
    );
    println!("|---|---|---|---|---|");
    type PerClients = [f64; 2];
    type Baseline = [Option<f64>; 2];
    let rows: [(&str, PerClients, PerClients, Baseline, Baseline); 3] = [
        (
            "durable creates/s",
            e.puts,
            d.puts,
            raw.map(Some),
            raw_cas.map(Some),
        ),
        ("gets/s", e.gets, d.gets, [None; 2], [None; 2]),
        (
            "100-key prefix ranges/s",
            e.ranges,
            d.ranges,
            [None; 2],
            [None; 2],
        ),
    ];
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_default();
    for (label, emb, etcd, put, cas) in rows {
        for (i, c) in CLIENTS.into_iter().enumerate() {
            println!(
                "| {label}, {c} client{} | {:.0} | {:.0} | {} | {} |",
                if c == 1 { "" } else { "s" },
                emb[i],
                etcd[i],
                cell(put[i]),
                cell(cas[i])
            );
        }
    }
    println!(
        "| watch delivery p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | | |",
        e.watch_p50_ms, e.watch_p99_ms, d.watch_p50_ms, d.watch_p99_ms
    );
    println!();
    println!(
        "group commit: 64 writers reach {:.1}x the single-writer put rate (target >= 10x)",
        e.puts[1] / e.puts[0]
    );
    println!(
        "etcd backend: {:.0}% / {:.0}% of raw etcd-client puts at 1 / 64 writers (target >= 90%)",
        100.0 * d.puts[0] / raw[0],
        100.0 * d.puts[1] / raw[1]
    );
    println!(
        "etcd backend: {:.0}% / {:.0}% of raw etcd-client CAS creates at 1 / 64 writers",
        100.0 * d.puts[0] / raw_cas[0],
        100.0 * d.puts[1] / raw_cas[1]
    );
}
