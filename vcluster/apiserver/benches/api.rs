//! The API server benchmark: `cargo bench -p vcluster-apiserver --bench api`.
//!
//! One process, the embedded store, kube-rs as the client (its CPU shares the 2 cores):
//! - creates/s through the API beside raw store creates/s of the same objects (the ratio
//!   is the API's overhead);
//! - GET and LIST requests/s;
//! - 1,000 concurrent watchers: delay from a write's acknowledgement to each watcher;
//! - the memory of an idle tenant (RSS growth over 1,000 new tenants, divided by 1,000);
//! - a new tenant's first answer: from creating it to its first successful request;
//! - the CPU the process uses while its 1,000 tenants (and their controllers) are idle;
//! - workloads on the node simulator: a 100-replica Deployment until fully available, and
//!   100 tenants with one each (10,000 pods) until all are, beside the same pods created
//!   directly through the API.
//!
//! `cargo bench -p vcluster-apiserver --bench api -- creates` runs one phase (`tenants`,
//! `creates`, `creates-etcd` (needs `etcd` on the PATH), `reads`, `watchers`, `crds`,
//! `rbac` or `workloads`), e.g. under a profiler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use vcluster_apiserver::{Tenant, Tenants};
use vcluster_store::{Backend, Embedded, EmbeddedOptions, Etcd, EtcdOptions, Scoped, Store};
use vcluster_testkit::{EtcdCluster, rate};

const RUN_FOR: Duration = Duration::from_secs(3);
const CLIENTS: u64 = 64;

fn config_map(name: String) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([("app".to_owned(), "bench".to_owned())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("payload".to_owned(), "x".repeat(512))])),
        ..Default::default()
    }
}

async fn client_for(tenant: &Tenant, tenants: &Tenants, server: &str) -> Client {
    let text = tenant
        .admin_kubeconfig(tenants, server, true)
        .expect("kubeconfig");
    client_of(&text).await
}

/// A client of `user` (no groups: everything it may do comes from RBAC).
async fn client_as(tenant: &Tenant, tenants: &Tenants, server: &str, user: &str) -> Client {
    let (cert, key) = tenant
        .identity
        .issue_client(user, &[])
        .expect("certificate");
    let host = tenants.host(&tenant.name);
    let text = vcluster_apiserver::Kubeconfig {
        cluster: &tenant.name,
        server,
        tls_server_name: Some(&host),
        ca_pem: tenant.identity.ca_cert_pem(),
        user,
        client_cert_pem: Some(&cert),
        client_key_pem: Some(&key),
        token: None,
    }
    .render();
    client_of(&text).await
}

async fn client_of(text: &str) -> Client {
    let kubeconfig: Kubeconfig = Kubeconfig::from_yaml(text).expect("parse kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// LISTs of the 100 config maps of the namespace per second (selected by their label: the
/// namespace also holds `kube-root-ca.crt`), with these parameters.
async fn list_rate(api: &Api<ConfigMap>, params: ListParams) -> f64 {
    let api = api.clone();
    let params = params.labels("app=bench");
    rate(CLIENTS as usize, RUN_FOR, move |_, _| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            let list = api.list(&params).await.expect("list");
            assert_eq!(list.items.len(), 100);
        }
    })
    .await
}

/// Requests per second of `request()` (answered 200 or 201) through kube-rs's connection
/// pool, reading each response body without decoding it: the server's share of the work,
/// where the typed client's JSON decoding would otherwise take most of the 2 cores.
async fn raw_rate<F>(client: &Client, request: F) -> f64
where
    F: Fn(u64, u64) -> http::Request<Vec<u8>> + Send + Sync + 'static,
{
    let (client, request) = (client.clone(), Arc::new(request));
    rate(CLIENTS as usize, RUN_FOR, move |c, i| {
        let (client, request) = (client.clone(), request.clone());
        async move {
            let response = client
                .send(request(c, i).map(kube::client::Body::from))
                .await
                .expect("request");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert!(status.is_success() && !body.is_empty(), "{status}");
        }
    })
    .await
}

fn rss_kib() -> u64 {
    vcluster_testkit::memory_kib(None, "VmRSS").expect("VmRSS")
}

/// The CPU time (user and system) the process has used, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// mimalloc: glibc's allocator spent ~15% of the API's CPU in malloc/free and blocked on its
/// arena locks under load (measured with `perf`, API benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("install the crypto provider");
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend: Arc<dyn Backend> = Arc::new(
        Embedded::open(dir.path().join("store.redb"), EmbeddedOptions::default()).expect("store"),
    );
    let Served {
        tenants,
        tenant,
        server,
        client,
    } = serve(backend.clone()).await;
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |phase: &str| only.as_deref().is_none_or(|o| o == phase);
    let mut rows = vec![
        "| figure (2 cores, kube-rs client; embedded store unless said) | measured | target |"
            .to_owned(),
        "|---|---|---|".to_owned(),
    ];

    if run("tenants") {
        rows.extend(idle_tenants(&tenants, &server).await);
    }
    if run("creates") {
        rows.push(creates("embedded", &backend, &client).await);
    }
    if run("creates-etcd") {
        // The same over a real etcd (single member, loopback), whose raw puts are slower.
        let etcd = EtcdCluster::single();
        let backend: Arc<dyn Backend> = Arc::new(
            Etcd::connect(EtcdOptions::new(etcd.endpoints()))
                .await
                .expect("etcd"),
        );
        let served = serve(backend.clone()).await;
        rows.push(creates("etcd", &backend, &served.client).await);
    }
    let small_api: Api<ConfigMap> = Api::namespaced(client.clone(), "small");
    if run("reads") || run("watchers") {
        fill_small(&client, &small_api).await;
    }
    if run("reads") {
        rows.extend(reads(&small_api).await);
    }
    if run("watchers") {
        rows.push(watchers(&tenant, &tenants, &server, &small_api).await);
    }
    if run("crds") {
        rows.extend(crds(&client).await);
    }
    if run("rbac") {
        rows.push(rbac(&tenant, &tenants, &server, &client).await);
    }
    if run("workloads") {
        rows.extend(workloads(&tenants, &server).await);
    }
    for row in rows {
        println!("{row}");
    }
}

/// A server over `backend` with one tenant, and an admin client of it.
struct Served {
    tenants: Arc<Tenants>,
    tenant: Arc<Tenant>,
    server: String,
    client: Client,
}

async fn serve(backend: Arc<dyn Backend>) -> Served {
    let tenants = Arc::new(Tenants::new(
        backend,
        "vcluster.local",
        vec!["127.0.0.1".into()],
    ));
    let tenant = tenants.open_or_create("bench").await.expect("tenant");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let server = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    tokio::spawn(vcluster_apiserver::serve(
        listener,
        tenants.clone(),
        vcluster_apiserver::Limits::default(),
    ));
    let client = client_for(&tenant, &tenants, &server).await;
    Served {
        tenants,
        tenant,
        server,
        client,
    }
}

fn crd(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("things.g{i}.example.com")},
        "spec": {"group": format!("g{i}.example.com"), "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    })
}

/// 200 CRDs: from each one's creation to its first answered LIST, then discovery requests/s
/// (`/apis`, the aggregated list of groups) with the 200 in place.
async fn crds(client: &Client) -> [String; 2] {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let mut served = Vec::new();
    for i in 0..200 {
        let start = Instant::now();
        let object: DynamicObject = serde_json::from_value(crd(i)).expect("crd");
        crds.create(&PostParams::default(), &object)
            .await
            .expect("create crd");
        let things: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(&format!("g{i}.example.com"), "v1", "Thing"),
                "things",
            ),
        );
        // Served when its first LIST answers; a 404 means not yet.
        loop {
            match things.list(&ListParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err(e) => panic!("list of a new CRD's objects: {e}"),
            }
        }
        served.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    served.sort_by(f64::total_cmp);
    let (s50, s99) = (percentile(&served, 0.5), percentile(&served, 0.99));
    let discovery = {
        let client = client.clone();
        rate(CLIENTS as usize, RUN_FOR, move |_, _| {
            let client = client.clone();
            async move {
                let groups = client.list_api_groups().await.expect("discovery");
                assert!(groups.groups.len() > 200);
            }
        })
        .await
    };
    eprintln!("crds: served p50 {s50:.1} ms, p99 {s99:.1} ms; discovery {discovery:.0}/s");
    [
        format!(
            "| a CRD served (create to first LIST answered), 200 CRDs | p50 {s50:.1} ms, p99 {s99:.1} ms | ≤ 1 s |"
        ),
        format!("| discovery (`/apis`) with 200 CRDs, 64 clients | {discovery:.0}/s | ≥ 1,000/s |"),
    ]
}

/// GETs of one object by a user whose rights come from RBAC, with 1,000 role bindings in
/// the tenant, beside the same GETs by the admin (`system:masters`, never evaluated).
async fn rbac(tenant: &Tenant, tenants: &Tenants, server: &str, admin: &Client) -> String {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    create_namespace(admin, "team").await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "team");
    cms.create(&PostParams::default(), &config_map("target".into()))
        .await
        .expect("configmap");
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "team");
    let binding = |name: String, user: String| RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: user,
            ..Default::default()
        }]),
    };
    for i in 0..999 {
        bindings
            .create(
                &PostParams::default(),
                &binding(format!("b{i}"), format!("user-{i}")),
            )
            .await
            .expect("binding");
    }
    bindings
        .create(
            &PostParams::default(),
            &binding("reader".into(), "reader".into()),
        )
        .await
        .expect("binding");
    let reader: Api<ConfigMap> =
        Api::namespaced(client_as(tenant, tenants, server, "reader").await, "team");
    reader.get("target").await.expect("the reader may get");
    let gets = |api: Api<ConfigMap>| async move {
        rate(CLIENTS as usize, RUN_FOR, move |_, _| {
            let api = api.clone();
            async move {
                api.get("target").await.expect("get");
            }
        })
        .await
    };
    let admin_rate = gets(cms.clone()).await;
    let reader_rate = gets(reader).await;
    let overhead = 100.0 * (admin_rate / reader_rate - 1.0);
    eprintln!("rbac: admin {admin_rate:.0} GET/s, reader {reader_rate:.0} GET/s");
    format!(
        "| GET/s with 1,000 role bindings: RBAC-evaluated user vs admin (not evaluated) | {reader_rate:.0} vs {admin_rate:.0} ({overhead:+.0}% time per GET) | ≤ +10% |"
    )
}

/// Idle tenants' memory and time to a first answer. Run first, before the other phases leave
/// freed memory for them to reuse.
async fn idle_tenants(tenants: &Arc<Tenants>, server: &str) -> [String; 3] {
    let before = rss_kib();
    let mut first_answer = Vec::new();
    for i in 0..1000 {
        let start = Instant::now();
        let t = tenants
            .open_or_create(&format!("t{i}"))
            .await
            .expect("tenant");
        if i % 50 == 0 {
            // A sample of new tenants answers its first request (TLS handshake included).
            let c = client_for(&t, tenants, server).await;
            let api: Api<ConfigMap> = Api::namespaced(c, "default");
            api.list(&ListParams::default())
                .await
                .expect("first request");
            first_answer.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let per_tenant = (rss_kib().saturating_sub(before)) as f64 / 1000.0;
    // Idle: nothing changes; the controllers should not run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_before, idle_start) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_seconds() - cpu_before) / idle_start.elapsed().as_secs_f64() * 100.0;
    first_answer.sort_by(f64::total_cmp);
    let (f50, f99) = (
        percentile(&first_answer, 0.5),
        percentile(&first_answer, 0.99),
    );
    eprintln!(
        "tenants: {per_tenant:.0} KiB each; first answer p50 {f50:.1} ms, p99 {f99:.1} ms; idle CPU {idle_cpu:.2}%"
    );
    [
        format!(
            "| idle tenant memory (RSS growth / 1,000 tenants, controllers running) | {per_tenant:.0} KiB | ≤ 256 KiB |"
        ),
        format!(
            "| CPU of the process over 10 s with 1,000 idle tenants | {idle_cpu:.2}% of one core | ≈ 0 |"
        ),
        format!(
            "| new tenant to first answer (incl. TLS handshake) | p50 {f50:.1} ms, p99 {f99:.1} ms | p99 ≤ 100 ms |"
        ),
    ]
}

/// Creates through the API beside raw store creates of the same JSON, through a tenant's
/// scoped view of the same backend.
async fn creates(label: &str, backend: &Arc<dyn Backend>, client: &Client) -> String {
    let raw_store: Arc<dyn Store> =
        Arc::new(Scoped::tenant(backend.clone(), "raw").expect("scope"));
    let body = Bytes::from(serde_json::to_vec(&config_map("x".into())).expect("json"));
    let raw = {
        let store = raw_store.clone();
        rate(CLIENTS as usize, RUN_FOR, move |c, i| {
            let (store, body) = (store.clone(), body.clone());
            async move {
                let key = Bytes::from(format!("/core/configmaps/default/raw-{c}-{i}"));
                store.create(key, body, None).await.expect("raw create");
            }
        })
        .await
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let creates = rate(CLIENTS as usize, RUN_FOR, move |c, i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &config_map(format!("api-{c}-{i}")))
                .await
                .expect("api create");
        }
    })
    .await;
    let undecoded = raw_rate(client, |c, i| {
        let body = serde_json::to_vec(&config_map(format!("raw-api-{c}-{i}"))).expect("json");
        http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .body(body)
            .expect("request")
    })
    .await;
    eprintln!(
        "creates ({label}): raw store {raw:.0}/s, API {creates:.0}/s, {undecoded:.0}/s undecoded"
    );
    format!(
        "| creates/s through the API, 64 clients, {label} store | typed client {creates:.0} ({:.0}% of raw store creates, {raw:.0}/s); responses not decoded {undecoded:.0} ({:.0}%) | ≥ 70% |",
        100.0 * creates / raw,
        100.0 * undecoded / raw
    )
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some(name.into());
    ns.create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
}

/// The namespace `small` with 100 labelled config maps (and, as every namespace,
/// `kube-root-ca.crt`), which the reads and the watchers use.
async fn fill_small(client: &Client, small_api: &Api<ConfigMap>) {
    create_namespace(client, "small").await;
    for i in 0..100 {
        small_api
            .create(&PostParams::default(), &config_map(format!("cm-{i}")))
            .await
            .expect("fill");
    }
}

/// GET of one object, LIST of the 100-object namespace.
async fn reads(small_api: &Api<ConfigMap>) -> [String; 2] {
    let gets = {
        let api = small_api.clone();
        rate(CLIENTS as usize, RUN_FOR, move |c, i| {
            let api = api.clone();
            async move {
                api.get(&format!("cm-{}", (c + i) % 100))
                    .await
                    .expect("get");
            }
        })
        .await
    };
    let lists = list_rate(small_api, ListParams::default()).await;
    let cached_lists = list_rate(small_api, ListParams::default().match_any()).await;
    let client: Client = small_api.clone().into_client();
    let cached_list = || {
        http::Request::get(
            "/api/v1/namespaces/small/configmaps?resourceVersion=0&labelSelector=app%3Dbench",
        )
        .body(Vec::new())
        .expect("request")
    };
    let size = client
        .request_text(cached_list())
        .await
        .expect("list")
        .len()
        / 1024;
    let undecoded = raw_rate(&client, move |_, _| cached_list()).await;
    eprintln!(
        "reads: {gets:.0} GET/s, {lists:.0} LIST/s, {cached_lists:.0} cached LIST/s, {undecoded:.0} undecoded (100 objects)"
    );
    [
        format!("| GET/s, 64 clients | {gets:.0} | ≥ 10,000 |"),
        format!(
            "| LIST/s (100 objects, {size} KiB), 64 clients | typed client: {lists:.0} consistent (no resourceVersion), {cached_lists:.0} any state (resourceVersion=0), both from the watch cache; from the cache, responses not decoded: {undecoded:.0} | ≥ 10,000 |"
        ),
    ]
}

/// 1,000 watchers over ten clients (connections): the delay from each create's
/// acknowledgement to each watcher's receiving it.
async fn watchers(
    tenant: &Tenant,
    tenants: &Tenants,
    server: &str,
    small_api: &Api<ConfigMap>,
) -> String {
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(client_for(tenant, tenants, server).await);
    }
    let rv = small_api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    const EVENTS: usize = 20;
    let mut watchers = Vec::new();
    for w in 0..1000 {
        let api: Api<ConfigMap> = Api::namespaced(clients[w % 10].clone(), "small");
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(60), &rv)
                .await
                .expect("watch")
                .boxed();
            let mut seen = Vec::with_capacity(EVENTS);
            while seen.len() < EVENTS {
                match stream.next().await {
                    Some(Ok(WatchEvent::Added(cm))) => {
                        let name = cm.metadata.name.unwrap_or_default();
                        if name.starts_with("watched-") {
                            seen.push((name, Instant::now()));
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("watch ended: {other:?}"),
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let every watch start
    let mut acked = std::collections::HashMap::new();
    for i in 0..EVENTS {
        let name = format!("watched-{i}");
        small_api
            .create(&PostParams::default(), &config_map(name.clone()))
            .await
            .expect("create");
        acked.insert(name, Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delays = Vec::new();
    for w in watchers {
        for (name, at) in w.await.expect("watcher") {
            delays.push(at.saturating_duration_since(acked[&name]).as_secs_f64() * 1000.0);
        }
    }
    delays.sort_by(f64::total_cmp);
    let (w50, w99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    eprintln!(
        "1,000 watchers: p50 {w50:.1} ms, p99 {w99:.1} ms over {} deliveries",
        delays.len()
    );

    format!("| 1,000 watchers, delay to each | p50 {w50:.1} ms, p99 {w99:.1} ms | p99 ≤ 50 ms |")
}

/// A Deployment of `replicas` pods of nginx.
fn deployment(name: &str, replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
        }
    }))
    .expect("a deployment")
}

/// Waits until the Deployment has all its replicas available, watching it (polling 100
/// Deployments would load the server the figure measures).
async fn available(api: &Api<k8s_openapi::api::apps::v1::Deployment>, name: &str, replicas: i32) {
    let all_available = move |d: Option<&k8s_openapi::api::apps::v1::Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.available_replicas)
            == Some(replicas)
    };
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        kube::runtime::wait::await_condition(api.clone(), name, all_available),
    )
    .await;
    if !matches!(waited, Ok(Ok(_))) {
        let d = api.get(name).await.expect("get the deployment");
        panic!("{name} never became available: {:?}", d.status);
    }
}

/// Creates `count` pods directly through the API from 64 concurrent clients (the baseline
/// of the workload figures: the API work a rollout cannot avoid); the time it took.
async fn direct_pods(client: &Client, namespace: &str, count: usize) -> Duration {
    use k8s_openapi::api::core::v1::Pod;
    create_namespace(client, namespace).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "direct-"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }))
    .expect("a pod");
    let start = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(64, |_| {
            let (api, pod) = (api.clone(), pod.clone());
            async move {
                api.create(&PostParams::default(), &pod)
                    .await
                    .expect("create a pod");
            }
        })
        .await;
    start.elapsed()
}

/// Runs the node simulator against a tenant.
async fn simulate(tenant: &Tenant, tenants: &Tenants, server: &str, nodes: usize) {
    let client = client_for(tenant, tenants, server).await;
    let options = vcluster_nodesim::Options {
        nodes,
        ..Default::default()
    };
    tokio::spawn(async move { vcluster_nodesim::run(client, options).await });
}

/// A 100-replica Deployment until available, then 100 tenants with one each.
async fn workloads(tenants: &Arc<Tenants>, server: &str) -> [String; 2] {
    use k8s_openapi::api::apps::v1::Deployment;
    // The baselines' pods go to a tenant without nodes: nothing else acts on them.
    let unscheduled = tenants.open_or_create("direct").await.expect("tenant");
    let direct_client = client_for(&unscheduled, tenants, server).await;
    let direct = direct_pods(&direct_client, "hundred", 100).await;
    let one = tenants.open_or_create("rollout").await.expect("tenant");
    simulate(&one, tenants, server, 4).await;
    let client = client_for(&one, tenants, server).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    api.create(&PostParams::default(), &deployment("web", 100))
        .await
        .expect("create the deployment");
    available(&api, "web", 100).await;
    let rollout = start.elapsed();

    let mut apis = Vec::new();
    for i in 0..100 {
        let t = tenants
            .open_or_create(&format!("w{i}"))
            .await
            .expect("tenant");
        simulate(&t, tenants, server, 1).await;
        apis.push(Api::<Deployment>::namespaced(
            client_for(&t, tenants, server).await,
            "default",
        ));
    }
    let direct_many = direct_pods(&direct_client, "many", 10_000).await;
    let start = Instant::now();
    futures::future::join_all(apis.iter().map(|api| async move {
        api.create(&PostParams::default(), &deployment("web", 100))
            .await
            .expect("create the deployment");
        available(api, "web", 100).await;
    }))
    .await;
    let many = start.elapsed();
    eprintln!(
        "workloads: 100 replicas available in {rollout:?} (100 direct pod creates {direct:?}); 10,000 pods over 100 tenants Running in {many:?} (10,000 direct creates {direct_many:?})"
    );
    [
        format!(
            "| 100-replica Deployment until fully available (node simulator) vs the 100 pods created directly | {:.2} s vs {:.2} s ({:.1}x) | ≤ 2 s |",
            rollout.as_secs_f64(),
            direct.as_secs_f64(),
            rollout.as_secs_f64() / direct.as_secs_f64()
        ),
        format!(
            "| 10,000 pods over 100 tenants (a 100-replica Deployment each) until all Running and available vs 10,000 pods created directly | {:.1} s vs {:.1} s ({:.1}x) | ≤ 20 s |",
            many.as_secs_f64(),
            direct_many.as_secs_f64(),
            many.as_secs_f64() / direct_many.as_secs_f64()
        ),
    ]
}
