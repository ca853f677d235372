//! SIGTERM, what process managers and Kubernetes send, drains `vcluster up`: under a
//! running watch and a stream of writes, the watch ends cleanly (its stream closes, no
//! error), the process exits 0, and every write the server acknowledged is there after a
//! restart on the same data directory (embedded store: the one whose files this process
//! owns).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use vcluster_tests::{StoreKind, Up};

/// A client of the server whose data directory is `dir`.
async fn ready_client(dir: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(kubeconfig) = Kubeconfig::read_from(dir.join("kubeconfig"))
            && let Ok(config) =
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await
            && let Ok(client) = Client::try_from(config)
            && client.apiserver_version().await.is_ok()
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "vcluster up did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), name.to_owned())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_cleanly_and_loses_no_acknowledged_write() {
    let mut up = tokio::task::spawn_blocking(|| Up::start(StoreKind::Embedded, &[], 0))
        .await
        .expect("start vcluster up");
    let client = ready_client(up.dir()).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");

    let mut watch = config_maps
        .watch(&WatchParams::default().timeout(290), "0")
        .await
        .expect("a watch")
        .boxed();
    // Writers that go on until the server stops answering, recording what was acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (config_maps, acknowledged) = (config_maps.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                match config_maps
                    .create(&PostParams::default(), &config_map(&name))
                    .await
                {
                    Ok(_) => acknowledged.lock().expect("lock").push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the writes and the watch run for a while, then ask the server to stop.
    let mut seen = 0;
    while seen < 50 {
        match watch.next().await {
            Some(Ok(WatchEvent::Added(_))) => seen += 1,
            Some(Ok(_)) => {}
            other => panic!("the watch broke before the shutdown: {other:?}"),
        }
    }
    let terminated = tokio::task::spawn_blocking(move || {
        let status = up.terminate();
        (up, status)
    });

    // The watch ends: its stream closes without an error event or a broken body.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = watch.next().await {
            match event {
                Ok(WatchEvent::Added(_) | WatchEvent::Bookmark(_)) => {}
                other => panic!("the watch did not end cleanly: {other:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end after SIGTERM");
    let (mut up, status) = terminated.await.expect("join");
    assert!(status.success(), "vcluster up exited with {status}");
    for writer in writers {
        writer.await.expect("writer");
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(!acknowledged.is_empty());
    let up = tokio::task::spawn_blocking(move || {
        up.restart();
        up
    })
    .await
    .expect("restart vcluster up");
    let client = ready_client(up.dir()).await;
    let stored: Vec<String> = Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
