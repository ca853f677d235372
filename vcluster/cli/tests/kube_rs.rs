//! kube-rs against `vcluster up`: discovery, the typed and the dynamic client, a watcher,
//! a watch from a revision the server no longer holds (410 inside the stream), and a
//! watcher that recovers from that 410 by re-listing.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};

mod common;
use common::{StoreKind, Up};

async fn client(up: &Up) -> Client {
    let kubeconfig = Kubeconfig::read_from(up.kubeconfig()).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a kube-rs config");
    Client::try_from(config).expect("a kube-rs client")
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_owned(), "rs".to_owned())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), value.to_owned())])),
        ..Default::default()
    }
}

async fn scenario(up: &Up) {
    let client = client(up).await;
    // Discovery visits every group-version and fails on any broken one.
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(discovery.has_group("apps") && discovery.has_group("rbac.authorization.k8s.io"));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some("rs".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");

    // A watcher, started before the writes.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rs");
    let stream = watcher(cms.clone(), watcher::Config::default().labels("app=rs"));
    let seen = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut applied = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .map(|r| r.expect("watcher"))
        {
            match event {
                watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                    applied.push(cm.name_any())
                }
                watcher::Event::Delete(cm) => {
                    applied.push(format!("deleted {}", cm.name_any()));
                    break;
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
        applied
    });

    let created = cms
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .expect("create");
    assert!(
        created
            .resource_version()
            .is_some_and(|rv| rv.parse::<u64>().is_ok())
    );
    let listed = cms
        .list(&ListParams::default().labels("app=rs"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert!(
        listed
            .metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );
    let patch = serde_json::json!({"data": {"k": "2"}});
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("2")
    );
    match cms
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("a duplicate create answered {other:?}"),
    }

    // The dynamic client, from discovery.
    let (resource, _) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.kind == "ConfigMap")
        .expect("configmaps discovered");
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "rs", &resource);
    let object = dynamic.get("a").await.expect("dynamic get");
    assert_eq!(object.data["data"]["k"], "2");

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let events = seen.await.expect("watcher task");
    assert_eq!(events.first().map(String::as_str), Some("a"), "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("deleted a"),
        "{events:?}"
    );

    // A watcher of a quiet namespace whose watches end every second: while the writes below
    // push its revision out of the window, its next watch gets 410, and it must re-list and
    // go on seeing events.
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some("rs-quiet".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    let quiet: Api<ConfigMap> = Api::namespaced(client.clone(), "rs-quiet");
    let (inits_tx, mut inits) = tokio::sync::mpsc::unbounded_channel();
    let recovering = tokio::spawn({
        let stream = watcher(quiet.clone(), watcher::Config::default().timeout(1));
        async move {
            let mut stream = std::pin::pin!(stream);
            let mut expired = 0;
            while let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_secs(60), stream.next()).await
            {
                match item {
                    Ok(watcher::Event::InitDone) => {
                        let _ = inits_tx.send(());
                    }
                    Ok(watcher::Event::Apply(cm)) if cm.name_any() == "after" => {
                        return expired;
                    }
                    Ok(_) => {}
                    Err(watcher::Error::WatchError(status)) if status.code == 410 => expired += 1,
                    Err(e) => panic!("the watcher failed: {e}"),
                }
            }
            panic!("the watcher never saw the object created after the 410");
        }
    });
    inits.recv().await.expect("the first list");

    // Enough writes to push the first revisions out of the watch cache's window, then a
    // watch from the oldest: the server answers 410 inside the stream.
    let old = created.resource_version().expect("rv");
    for i in 0..4200 {
        cms.create(
            &PostParams::default(),
            &config_map(&format!("bulk-{i}"), "x"),
        )
        .await
        .expect("bulk create");
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &old)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("a watch from a revision out of the window answered {other:?}"),
    }

    // The quiet watcher re-lists after its 410 and then sees a new object.
    tokio::time::timeout(Duration::from_secs(20), inits.recv())
        .await
        .expect("the watcher re-listed")
        .expect("the watcher task is running");
    quiet
        .create(&PostParams::default(), &config_map("after", "1"))
        .await
        .expect("create after the re-list");
    let expired = recovering.await.expect("watcher task");
    assert!(expired >= 1, "the watcher never got a 410");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_on_the_embedded_store() {
    let up = Up::start(StoreKind::Embedded);
    scenario(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_on_etcd() {
    let up = Up::start(StoreKind::Etcd);
    scenario(&up).await;
}
