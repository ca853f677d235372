//! The official Python client against `vcluster up`: create, list, watch, patch, delete,
//! and the errors it raises; bodies its typed models could not read back are refused, and
//! what is stored carries every field Go always writes, which its models require.

use std::process::Command;

use vcluster_testkit::clients::python_bin;
use vcluster_tests::{Tenant, directly};

vcluster_tests::scenarios! {
    simulated_nodes: 0;
    directly: [python_client, ill_typed_bodies, always_written_fields],
}

const SCRIPT: &str = r#"
import threading
from kubernetes import watch
from kubernetes.client.rest import ApiException

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
# Bound to a node, it is deleted gracefully: Terminating for its 30 s, or until its
# kubelet (none runs for node-1 here) or a grace of 0 ends it.
evicted = v1.read_namespaced_pod("p1", ns)
assert evicted.metadata.deletion_timestamp is not None, evicted.metadata
assert evicted.metadata.deletion_grace_period_seconds == 30, evicted.metadata
v1.delete_namespaced_pod("p1", ns, grace_period_seconds=0)
try:
    v1.read_namespaced_pod("p1", ns)
    raise SystemExit("the pod deleted with a grace of 0 is still there")
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
    run(tenant, SCRIPT, "python client: ok");
}

/// What every script starts with: the client configured from the kubeconfig it is given,
/// and `send`, a raw request whose status, JSON answer and response it returns.
const PRELUDE: &str = r#"
import json, sys
from kubernetes import client, config

config.load_kube_config(config_file=sys.argv[1])
api = client.ApiClient()
base = api.configuration.host

def send(method, path, body, content_type="application/json"):
    r = api.call_api(method, base + path, header_params={"Content-Type": content_type,
        "Accept": "application/json"}, body=body)
    return r.status, json.loads(r.read() or "{}"), r
"#;

/// Runs `script` after the prelude with the tenant's kubeconfig as its argument; it must
/// end printing `done`.
fn run(tenant: &Tenant, script: &str, done: &str) {
    let out = Command::new(python_bin())
        .args(["-c", &format!("{PRELUDE}{script}")])
        .arg(tenant.kubeconfig())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(done));
}

/// Issue 12's ill-typed bodies, sent raw: each is refused as kube-apiserver refuses it, and
/// afterwards the client's typed models still read every LIST of the namespace (before,
/// they were stored and every typed LIST failed).
const ILL_TYPED: &str = r#"
v1, apps = client.CoreV1Api(), client.AppsV1Api()
ns = "typed"
v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

def refused(code, message, method, path, body, content_type="application/json"):
    status, answer, _ = send(method, path, body, content_type)
    assert status == code, (status, answer, body)
    assert answer.get("kind") == "Status" and message in answer.get("message", ""), (answer, message)
    return answer

cms = "/api/v1/namespaces/" + ns + "/configmaps"
refused(400, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string',
    "POST", cms, {"kind": "ConfigMap", "data": {"a": 1}, "metadata": {"name": "t1", "labels": "x"}})
refused(400, "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string",
    "POST", cms, {"kind": "ConfigMap", "metadata": {"name": "t2", "labels": "x"}})
refused(400, 'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32',
    "POST", "/apis/apps/v1/namespaces/" + ns + "/deployments",
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1"}, "spec": {"replicas": "three",
     "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
refused(400, "illegal base64 data at input byte 3", "POST", "/api/v1/namespaces/" + ns + "/secrets",
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"a": "not base64"}})
refused(400, 'Secret in version "v1" cannot be handled as a ConfigMap', "POST", cms,
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t3"}})
refused(400, "the API version in the data (v2) does not match the expected API version (v1)", "POST", cms,
    {"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "t4"}})
answer = refused(422, "metadata.labels: Invalid value", "POST", cms,
    {"metadata": {"name": "t5", "labels": {"bad key": "v"}}})
assert answer["details"]["causes"][0]["field"] == "metadata.labels", answer
refused(422, "Too long: must have at most 1048576 bytes", "POST", cms,
    {"metadata": {"name": "t6"}, "data": {"a": "x" * (1 << 20), "b": "y"}})

# A body without kind or apiVersion is the endpoint's kind, and stored with both.
status, created, _ = send("POST", cms, {"metadata": {"name": "nokind"}, "data": {"a": "b"}})
assert status == 201 and created["kind"] == "ConfigMap" and created["apiVersion"] == "v1", created
# A name of 253 characters (a DNS subdomain, no label limit) is a ConfigMap's.
status, _, _ = send("POST", cms, {"metadata": {"name": "n" * 253}})
assert status == 201, status
# Unknown fields are dropped, with a warning when the client does not say (upstream's Warn).
status, created, r = send("POST", cms, {"metadata": {"name": "extra"}, "data": {"a": "b"}, "colour": "red"})
assert status == 201 and "colour" not in created, created
assert r.getheader("Warning") == '299 - "unknown field \\"colour\\""', r.getheaders()
status, answer, _ = send("POST", cms + "?fieldValidation=Strict", {"metadata": {"name": "strict"}, "colour": "red"})
assert status == 400 and 'strict decoding error: unknown field "colour"' in answer["message"], answer

# Patches whose result does not decode: 422, whatever the patch type.
for media in ["application/strategic-merge-patch+json", "application/merge-patch+json"]:
    answer = refused(422, "json: cannot unmarshal string into Go struct field ConfigMap.data of type map[string]string",
        "PATCH", cms + "/nokind", {"data": "notamap"}, media)
    assert answer["details"]["causes"][0]["field"] == "patch", answer
refused(422, "json: cannot unmarshal number into Go struct field ConfigMap.data of type map[string]string", "PATCH", cms + "/nokind",
    [{"op": "add", "path": "/data", "value": 5}], "application/json-patch+json")

# Every typed LIST of the namespace still reads.
names = sorted(c.metadata.name for c in v1.list_namespaced_config_map(ns).items)
assert names == ["extra", "n" * 253, "nokind"] or names == ["extra", "kube-root-ca.crt", "n" * 253, "nokind"], names
assert v1.list_namespaced_secret(ns).items is not None
assert apps.list_namespaced_deployment(ns).items == []
assert v1.read_namespaced_config_map("nokind", ns).data == {"a": "b"}
print("ill-typed bodies: ok")
"#;

fn ill_typed_bodies(tenant: &Tenant) {
    run(tenant, ILL_TYPED, "ill-typed bodies: ok");
}

/// Objects written without fields Go always writes (a status update that sends only some
/// numbers, a patch that nulls one, a container status or a node's system info in part)
/// are read back by the client's typed models, which require those fields: the server
/// fills them in at Go's zero value, as kube-apiserver's decoding into Go structs does.
const ALWAYS_WRITTEN: &str = r#"
v1, apps, batch = client.CoreV1Api(), client.AppsV1Api(), client.BatchV1Api()
policy, autoscaling = client.PolicyV1Api(), client.AutoscalingV1Api()
ns = "zero"
v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

def written(method, path, body, content_type="application/json"):
    status, answer, _ = send(method, path, body, content_type)
    assert status in (200, 201), (status, answer)
    return answer

template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
# Created through the typed API, which reads each answer into its models.
ds = apps.create_namespaced_daemon_set(ns, {"metadata": {"name": "agent"},
    "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}})
assert ds.status.number_ready == 0 and ds.status.desired_number_scheduled == 0, ds.status
job = batch.create_namespaced_job(ns, {"metadata": {"name": "once"},
    "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": dict(template["spec"], restartPolicy="Never")}}})
assert job.spec.template.spec.containers[0].name == "c"
hpa = autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, {"metadata": {"name": "scaler"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}})
assert hpa.spec.max_replicas == 3
pdbs = "/apis/policy/v1/namespaces/" + ns + "/poddisruptionbudgets"
pdb = policy.create_namespaced_pod_disruption_budget(ns, {"metadata": {"name": "budget"},
    "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}}})
assert pdb.status.expected_pods == 0, pdb.status

# A status update that sends only some of the numbers.
current = written("GET", pdbs + "/budget", None)
current["status"] = {"observedGeneration": 1, "conditions": [{"type": "DisruptionAllowed", "status": "False",
    "reason": "InsufficientPods", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
stored = written("PUT", pdbs + "/budget/status", current)
assert stored["status"]["currentHealthy"] == 0 and stored["status"]["expectedPods"] == 0, stored["status"]
status = policy.read_namespaced_pod_disruption_budget_status("budget", ns).status
assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed, status.expected_pods) == (0, 0, 0, 0), status
# A merge patch that nulls one: Go's decoder leaves the zero value.
written("PATCH", pdbs + "/budget/status", {"status": {"expectedPods": 3}}, "application/merge-patch+json")
written("PATCH", pdbs + "/budget/status", {"status": {"expectedPods": None}}, "application/merge-patch+json")
assert policy.read_namespaced_pod_disruption_budget("budget", ns).status.expected_pods == 0

# A container status that says only what its writer knows; nested structs are filled too.
v1.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": template["spec"]})
pod = written("GET", "/api/v1/namespaces/" + ns + "/pods/p", None)
pod["status"]["containerStatuses"] = [{"name": "c", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}]
written("PUT", "/api/v1/namespaces/" + ns + "/pods/p/status", pod)
seen = v1.read_namespaced_pod_status("p", ns).status.container_statuses[0]
assert (seen.restart_count, seen.image, seen.image_id) == (0, "", ""), seen

# A node's system info in part (a strategic merge patch of its status).
v1.create_node({"metadata": {"name": "n1"}})
written("PATCH", "/api/v1/nodes/n1/status", {"status": {"nodeInfo": {"kubeletVersion": "v1.34.0"}}},
    "application/strategic-merge-patch+json")
info = v1.read_node_status("n1").status.node_info
assert info.kubelet_version == "v1.34.0" and info.machine_id == "" and info.architecture == "", info

# Every typed LIST reads.
assert [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(ns).items] == ["budget"]
assert "n1" in [n.metadata.name for n in v1.list_node().items]
assert "p" in [p.metadata.name for p in v1.list_namespaced_pod(ns).items]
assert [d.metadata.name for d in apps.list_namespaced_daemon_set(ns).items] == ["agent"]
assert [j.metadata.name for j in batch.list_namespaced_job(ns).items] == ["once"]
assert [h.metadata.name for h in autoscaling.list_namespaced_horizontal_pod_autoscaler(ns).items] == ["scaler"]
print("always-written fields: ok")
"#;

fn always_written_fields(tenant: &Tenant) {
    run(tenant, ALWAYS_WRITTEN, "always-written fields: ok");
}
