//! The etcd backend while etcd fails: a single member killed with SIGKILL and restarted, and
//! a three-member cluster losing members one after another while writers and a watcher run.
//! No acknowledged write may be lost, and the watch must continue without gaps or duplicates.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use vcluster_store::{RangeRequest, Store};
use vcluster_testkit::EtcdCluster;

/// Creates unique keys under `prefix` until `stop`, recording the acknowledged ones. A
/// failed create has an unknown outcome; the next attempt uses a new key.
async fn create_until(store: Arc<dyn Store>, prefix: String, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = Bytes::from(format!("{prefix}{i:06}"));
        let value = Bytes::from(format!("v{i}"));
        match store.create(key.clone(), value.clone(), None).await {
            Ok(kv) => acked.push(Acked {
                revision: kv.mod_revision,
                key,
                value: Some(value),
            }),
            Err(e) => {
                assert!(e.is_retryable(), "unexpected failure: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

/// Runs writers and a watcher while `disrupt` kills and restarts members, then checks that
/// every acknowledged write is stored and was watched, in order, exactly once.
async fn survive(cluster: &mut EtcdCluster, disrupt: impl AsyncFnOnce(&mut EtcdCluster)) {
    let store: Arc<dyn Store> = connect_etcd(cluster.endpoints()).await;
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(b"w/", start).await.expect("watch");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(create_until(store.clone(), format!("w/{w}/"), stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    disrupt(cluster).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(
        acked.len() > 50,
        "too few writes ({}) to prove anything",
        acked.len()
    );

    // A fresh connection reads everything acknowledged.
    let reader = connect_etcd(cluster.endpoints()).await;
    let stored = reader
        .range(RangeRequest::prefix("w/"))
        .await
        .expect("range");
    let stored: HashMap<Bytes, u64> = stored
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    for a in &acked {
        assert_eq!(
            stored.get(&a.key),
            Some(&a.revision),
            "acknowledged write lost: {a:?}"
        );
    }
    let events = collect_until(&mut watch, max_revision(&acked), Duration::from_secs(60)).await;
    // Writes whose acknowledgement was lost may appear too: not exact.
    check_history(&events, &acked, start, &HashMap::new(), false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_loses_no_acknowledged_write_and_watches_resume() {
    let mut etcd = EtcdCluster::single();
    survive(&mut etcd, async |etcd| {
        etcd.kill(0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        etcd.restart(0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_survives_members_killed_in_turn() {
    let mut etcd = EtcdCluster::start(3);
    survive(&mut etcd, async |etcd| {
        for member in [0, 1] {
            etcd.kill(member);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            etcd.restart(member);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}
