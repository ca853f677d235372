//! The official Python client against `vcluster up`: create, list, watch, patch, delete,
//! and the errors it raises.

use std::process::Command;

use vcluster_testkit::clients::python_bin;
use vcluster_tests::{Tenant, directly};

vcluster_tests::scenarios! {
    simulated_nodes: 0;
    directly: [python_client],
}

const SCRIPT: &str = r#"
import sys, threading
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
names = [n.metadata.name for n in v1.list_namespace().items]
assert "kube-system" in names, names

ns = "py"
v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
events = []
def follow(rv):
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
rv = v1.list_namespaced_config_map(ns).metadata.resource_version
t = threading.Thread(target=follow, args=(rv,))
t.start()

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c1", labels={"app": "py"}), data={"k": "v"})
created = v1.create_namespaced_config_map(ns, cm)
assert created.metadata.uid and int(created.metadata.resource_version) > 0
listed = v1.list_namespaced_config_map(ns, label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["c1"]
patched = v1.patch_namespaced_config_map("c1", ns, {"data": {"k2": "v2"}})
assert patched.data == {"k": "v", "k2": "v2"}, patched.data

try:
    v1.create_namespaced_config_map(ns, cm)
    raise SystemExit("duplicate create succeeded")
except ApiException as e:
    assert e.status == 409, e.status
try:
    v1.read_namespaced_config_map("missing", ns)
    raise SystemExit("read of a missing object succeeded")
except ApiException as e:
    assert e.status == 404, e.status
stale = v1.read_namespaced_config_map("c1", ns)
v1.patch_namespaced_config_map("c1", ns, {"data": {"k3": "v3"}})
try:
    v1.replace_namespaced_config_map("c1", ns, stale)
    raise SystemExit("a stale update succeeded")
except ApiException as e:
    assert e.status == 409, e.status

v1.delete_namespaced_config_map("c1", ns)
t.join(20)
kinds = [k for k, _ in events]
assert kinds[0] == "ADDED" and "MODIFIED" in kinds and kinds[-1] == "DELETED", events
# A scheduler's binding, then an eviction (what kubectl drain sends).
pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p1"), spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]))
v1.create_namespaced_pod(ns, pod)
binding = client.V1Binding(metadata=client.V1ObjectMeta(name="p1"), target=client.V1ObjectReference(kind="Node", name="node-1"))
v1.create_namespaced_pod_binding("p1", ns, binding, _preload_content=False)
assert v1.read_namespaced_pod("p1", ns).spec.node_name == "node-1"
eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="p1", namespace=ns))
v1.create_namespaced_pod_eviction("p1", ns, eviction, _preload_content=False)
try:
    v1.read_namespaced_pod("p1", ns)
    raise SystemExit("the evicted pod is still there")
except ApiException as e:
    assert e.status == 404, e.status
# Custom objects: a CRD, then CRUD and a watch through CustomObjectsApi.
ext = client.ApiextensionsV1Api()
ext.create_custom_resource_definition({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.py.example.com"},
    "spec": {"group": "py.example.com", "scope": "Namespaced",
             "names": {"plural": "gizmos", "kind": "Gizmo"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"level": {"type": "integer"}}}}}}}]},
})
co = client.CustomObjectsApi()
gizmo_events = []
def follow_gizmos(rv):
    w = watch.Watch()
    for ev in w.stream(co.list_namespaced_custom_object, "py.example.com", "v1", ns, "gizmos", resource_version=rv, timeout_seconds=10):
        gizmo_events.append((ev["type"], ev["object"]["metadata"]["name"]))
        if ev["type"] == "DELETED":
            w.stop()
rv = co.list_namespaced_custom_object("py.example.com", "v1", ns, "gizmos")["metadata"]["resourceVersion"]
gt = threading.Thread(target=follow_gizmos, args=(rv,))
gt.start()
g = co.create_namespaced_custom_object("py.example.com", "v1", ns, "gizmos",
    {"apiVersion": "py.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"level": 1}})
assert g["metadata"]["uid"], g
listed = co.list_namespaced_custom_object("py.example.com", "v1", ns, "gizmos")
assert [i["metadata"]["name"] for i in listed["items"]] == ["g1"], listed
patched = co.patch_namespaced_custom_object("py.example.com", "v1", ns, "gizmos", "g1", {"spec": {"level": 2}})
assert patched["spec"]["level"] == 2, patched
try:
    co.create_namespaced_custom_object("py.example.com", "v1", ns, "gizmos",
        {"apiVersion": "py.example.com/v1", "kind": "Gizmo", "metadata": {"name": "bad"}, "spec": {"level": "high"}})
    raise SystemExit("an invalid custom object was accepted")
except ApiException as e:
    assert e.status == 422 and "spec.level" in e.body, (e.status, e.body)
co.delete_namespaced_custom_object("py.example.com", "v1", ns, "gizmos", "g1")
gt.join(20)
kinds = [k for k, _ in gizmo_events]
assert kinds and kinds[0] == "ADDED" and "MODIFIED" in kinds and kinds[-1] == "DELETED", gizmo_events

# A YAML request body (the API server takes application/yaml as kube-apiserver does),
# and a malformed one refused with 400.
api = client.ApiClient()
url = api.configuration.host + "/api/v1/namespaces/" + ns + "/configmaps"
yaml_body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v # comment\n"
r = api.call_api("POST", url, header_params={"Content-Type": "application/yaml", "Accept": "application/json"}, body=yaml_body)
assert r.status == 201, (r.status, r.read())
assert v1.read_namespaced_config_map("from-yaml", ns).data == {"k": "v"}
r = api.call_api("POST", url, header_params={"Content-Type": "application/yaml"}, body="metadata: [unclosed")
body = r.read().decode()
assert r.status == 400 and "not valid YAML" in body, (r.status, body)
print("python client: ok")
"#;

fn python_client(tenant: &Tenant) {
    let out = Command::new(python_bin())
        .args(["-c", SCRIPT])
        .arg(tenant.kubeconfig())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
