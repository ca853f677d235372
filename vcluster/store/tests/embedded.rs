//! What only the embedded backend has: a file that is closed and reopened.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use vcluster_store::{Error, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_the_revision_the_data_the_history_and_the_leases() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (acked, revision, lease) = {
        let store = open_embedded(dir.path());
        let acked = random_writer(store.clone(), b("k/"), 7, 300, 20, false).await;
        let lease = store.grant_lease(3600).await.expect("grant");
        store
            .create(b("leased"), b("v"), Some(lease))
            .await
            .expect("create");
        let mut watch = store.watch(b"k/", 0).await.expect("watch");
        drop(store);
        // Closing the store ends its watches rather than leaving them hanging.
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(item) = watch.next().await {
                if let Err(e) = item {
                    return e;
                }
            }
            panic!("the watch ended without saying why");
        })
        .await
        .expect("the watch ended");
        assert!(matches!(ended, Error::Closed), "{ended:?}");
        let revision = max_revision(&acked) + 1;
        (acked, revision, lease)
    };

    let store = open_embedded(dir.path());
    assert_eq!(store.current_revision().await.expect("revision"), revision);
    // The whole history is still there: a watch from the beginning replays it from disk.
    let mut watch = store.watch(b"k/", 0).await.expect("watch");
    let events = collect_until(&mut watch, max_revision(&acked), Duration::from_secs(10)).await;
    check_history(&events, &acked, 0, &HashMap::new(), true);
    let kv = store
        .get(b"leased")
        .await
        .expect("get")
        .expect("leased key kept");
    assert_eq!(kv.lease, Some(lease));
    let next = store.create(b("next"), b("v"), None).await.expect("create");
    assert_eq!(next.mod_revision, revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_expired_while_closed_is_revoked_on_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let store = open_embedded(dir.path());
        let lease = store.grant_lease(1).await.expect("grant");
        store
            .create(b("short"), b("v"), Some(lease))
            .await
            .expect("create");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let store = open_embedded(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.get(b"short").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired lease was never revoked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
