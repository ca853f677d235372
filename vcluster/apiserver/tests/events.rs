//! Events expire: they are stored with a lease (an hour, shared by the events of a minute),
//! and nothing else is. Written by real kubectl, checked in the tenant's store.

use std::sync::Arc;

use vcluster_apiserver::Tenants;
use vcluster_store::{Embedded, EmbeddedOptions};
use vcluster_testkit::clients::Kubectl;

const OBJECTS: &str = "apiVersion: v1
kind: Event
metadata: {name: first, namespace: default}
involvedObject: {kind: Pod, name: p, namespace: default}
reason: Started
message: started
type: Normal
---
apiVersion: v1
kind: Event
metadata: {name: second, namespace: default}
involvedObject: {kind: Pod, name: p, namespace: default}
reason: Killing
message: stopping
type: Normal
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kept, namespace: default}
";

#[test]
fn events_are_stored_with_a_lease_and_nothing_else_is() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend = Arc::new(
        Embedded::open(dir.path().join("store.redb"), EmbeddedOptions::default()).expect("store"),
    );
    let tenants = Arc::new(Tenants::new(
        backend,
        "vcluster.local",
        vec!["127.0.0.1".into()],
    ));
    let (tenant, port) = runtime.block_on(async {
        let tenant = tenants.open_or_create("t").await.expect("tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(vcluster_apiserver::serve(listener, tenants.clone()));
        (tenant, port)
    });
    let config = tenant
        .admin_kubeconfig(&tenants, &format!("https://127.0.0.1:{port}"), true)
        .expect("kubeconfig");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, config).expect("write kubeconfig");
    let k = Kubectl::new("v36", &path);
    let created = k.run_with(&["create", "-f", "-"], Some(OBJECTS));
    assert!(created.ok, "{}", created.stderr);
    let lease = |key: &str| {
        runtime
            .block_on(tenant.store.get(key.as_bytes()))
            .expect("read")
            .expect("stored")
            .lease
    };
    let first = lease("/core/events/default/first");
    assert!(first.is_some(), "an event without a lease never expires");
    assert_eq!(
        lease("/core/events/default/second"),
        first,
        "events of a minute share a lease"
    );
    assert_eq!(lease("/core/configmaps/default/kept"), None);
    // An update keeps the event expiring.
    k.ok(&["annotate", "event", "first", "seen=yes"]);
    assert_eq!(lease("/core/events/default/first"), first);
}
