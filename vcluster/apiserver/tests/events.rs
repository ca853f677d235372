//! Events expire: they are stored with a lease (an hour, shared by the events of a minute),
//! and nothing else is. Written by real kubectl, checked in the tenant's store.

mod common;

use common::Served;
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
    let (served, opened) = Served::start(&["t"]);
    let tenant = &opened[0];
    let config = tenant
        .admin_kubeconfig(&served.tenants, &served.server, true)
        .expect("kubeconfig");
    let path = served.write("kubeconfig", &config);
    let k = Kubectl::new("v36", &path);
    let created = k.run_with(&["create", "-f", "-"], Some(OBJECTS));
    assert!(created.ok, "{}", created.stderr);
    let lease = |key: &str| {
        served
            .runtime
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
