//! `/metrics` as monitoring reads it: real kubectl scrapes the server after requests of its
//! own, and the exposition is parsed and checked for kube-apiserver's series with the
//! labels of those requests, the store's operations, the controllers' work queues,
//! watches counted while they run, custom resources and tenants kept out of the labels,
//! and authorization (401 without a credential, 403 without the RBAC rule).

mod common;

use std::collections::BTreeMap;

use common::Served;
use vcluster_apiserver::Tenant;
use vcluster_testkit::clients::Kubectl;

/// One sample of the text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus or OpenMetrics text exposition. A small parser of our own:
/// `prometheus-parse` splits label sets on every comma (so a value holding one breaks it)
/// and `openmetrics-parser` is LGPL; this one reads quoted values with their escapes, and
/// fails the test on any line it cannot read.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => panic!("no value: {line:?}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let key: String = chars
                    .by_ref()
                    .map(|(_, c)| c)
                    .take_while(|c| *c != '=')
                    .collect();
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("unfinished escape: {line:?}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unfinished value: {line:?}"),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((at, '}')) => {
                        rest = &body[at + 1..];
                        break;
                    }
                    other => panic!("{other:?} after a label: {line:?}"),
                }
            }
        }
        let value = rest.split_whitespace().next().expect("a value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?}: {line:?}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The samples of `name` whose labels include all of `with`.
fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    with: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    samples.iter().filter(move |s| {
        s.name == name
            && with
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// The sum of the samples of `name` with `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    matching(samples, name, with).map(|s| s.value).sum()
}

fn scrape(k: &Kubectl) -> Vec<Sample> {
    parse(&k.ok(&["get", "--raw", "/metrics"]))
}

fn admin(served: &Served, tenant: &Tenant, file: &str) -> Kubectl {
    let config = tenant
        .admin_kubeconfig(&served.tenants, &served.server, true)
        .expect("kubeconfig");
    Kubectl::new("v36", served.write(file, &config))
}

/// A kubeconfig of `user` in `groups` (a client certificate of the tenant's CA), or of no
/// one (`None`: no credential at all).
fn user(served: &Served, tenant: &Tenant, user: Option<(&str, &[&str])>, file: &str) -> Kubectl {
    let issued = user.map(|(name, groups)| {
        tenant
            .identity
            .issue_client(name, groups)
            .expect("certificate")
    });
    let host = served.tenants.host(&tenant.name);
    let config = vcluster_apiserver::Kubeconfig {
        cluster: &tenant.name,
        server: &served.server,
        tls_server_name: Some(&host),
        ca_pem: tenant.identity.ca_cert_pem(),
        user: user.map_or("anonymous", |(name, _)| name),
        client_cert_pem: issued.as_ref().map(|(cert, _)| cert.as_str()),
        client_key_pem: issued.as_ref().map(|(_, key)| key.as_str()),
        token: None,
    }
    .render()
    // No credential: an empty user, not a null one, which clients refuse to load.
    .replace("  user:\ncontexts:", "  user: {}\ncontexts:");
    Kubectl::new("v36", served.write(file, &config))
}

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.acme-secret.example}
spec:
  group: acme-secret.example
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";

#[test]
fn requests_store_operations_and_queues_are_counted_with_upstreams_labels() {
    let (served, opened) = Served::start(&["tenant-a"]);
    let k = admin(&served, &opened[0], "admin");
    k.ok(&["create", "configmap", "m1", "--from-literal=a=b"]);
    k.ok(&["get", "configmap", "m1"]);
    k.fails(&["get", "configmap", "missing"]);
    k.ok(&["get", "configmaps"]);
    // A namespace, for the service-account controller to reconcile.
    k.ok(&["create", "namespace", "work"]);
    k.eventually(&["get", "serviceaccount", "default", "-n", "work"], |_| {
        true
    });
    // A custom resource, whose names are the tenant's and must not become labels.
    let created = k.run_with(&["create", "-f", "-"], Some(CRD));
    assert!(created.ok, "{}", created.stderr);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.acme-secret.example",
    ]);
    let widget = "apiVersion: acme-secret.example/v1\nkind: Widget\nmetadata: {name: w1}\n";
    let created = k.run_with(&["create", "-n", "default", "-f", "-"], Some(widget));
    assert!(created.ok, "{}", created.stderr);

    let before = scrape(&k);
    let configmaps = [
        ("group", ""),
        ("version", "v1"),
        ("resource", "configmaps"),
        ("subresource", ""),
        ("component", "apiserver"),
        ("dry_run", ""),
    ];
    let requests = |samples: &[Sample], verb: &str, scope: &str, code: &str| {
        let mut with = configmaps.to_vec();
        with.extend([("verb", verb), ("scope", scope), ("code", code)]);
        total(samples, "apiserver_request_total", &with)
    };
    assert!(requests(&before, "POST", "resource", "201") >= 1.0);
    assert!(requests(&before, "GET", "resource", "200") >= 1.0);
    assert!(requests(&before, "GET", "resource", "404") >= 1.0);
    assert!(requests(&before, "LIST", "namespace", "200") >= 1.0);
    k.ok(&["get", "configmap", "m1"]);
    let after = scrape(&k);
    assert_eq!(
        requests(&after, "GET", "resource", "200"),
        requests(&before, "GET", "resource", "200") + 1.0,
        "one more GET of a config map counted once"
    );

    // The duration histogram of those GETs: upstream's 23 buckets and +Inf, cumulative,
    // the last one equal to the count.
    let mut get = configmaps.to_vec();
    get.extend([("verb", "GET"), ("scope", "resource")]);
    let buckets: Vec<&Sample> =
        matching(&after, "apiserver_request_duration_seconds_bucket", &get).collect();
    assert_eq!(buckets.len(), 24, "{buckets:?}");
    assert!(buckets.iter().any(|b| b.labels["le"] == "0.005"));
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    let count = total(&after, "apiserver_request_duration_seconds_count", &get);
    assert!(count >= 2.0, "{count}");
    let infinite = buckets
        .iter()
        .find(|b| b.labels["le"] == "+Inf")
        .expect("+Inf");
    assert_eq!(infinite.value, count);

    // Non-resource requests by path, this scrape among them, in flight while it renders.
    let metrics = [
        ("verb", "GET"),
        ("subresource", "/metrics"),
        ("code", "200"),
    ];
    assert!(total(&after, "apiserver_request_total", &metrics) >= 1.0);
    let read_only = [("request_kind", "readOnly")];
    assert!(total(&after, "apiserver_current_inflight_requests", &read_only) >= 1.0);
    assert_eq!(
        matching(&after, "apiserver_current_inflight_requests", &[]).count(),
        2,
        "readOnly and mutating"
    );

    // The store's operations, by resource.
    let stored = [
        ("operation", "create"),
        ("group", ""),
        ("resource", "configmaps"),
    ];
    assert!(total(&after, "etcd_request_duration_seconds_count", &stored) >= 1.0);
    assert!(matching(&after, "etcd_request_duration_seconds_bucket", &stored).count() == 24);

    // The controllers' queues, by upstream's queue names.
    let queue = [("name", "serviceaccount")];
    assert!(total(&after, "workqueue_adds_total", &queue) >= 1.0);
    assert!(total(&after, "workqueue_work_duration_seconds_count", &queue) >= 1.0);
    assert!(total(&after, "workqueue_queue_duration_seconds_count", &queue) >= 1.0);
    assert_eq!(matching(&after, "workqueue_depth", &queue).count(), 1);
    assert_eq!(
        matching(&after, "workqueue_retries_total", &queue).count(),
        1
    );
    let reconciled = [("controller", "serviceaccount"), ("result", "success")];
    assert!(total(&after, "controller_runtime_reconcile_total", &reconciled) >= 1.0);

    // The custom resource is counted, under a name of ours; its own names appear nowhere,
    // nor does the tenant's outside its request count.
    let custom = [
        ("verb", "POST"),
        ("group", "_custom"),
        ("resource", "_custom"),
    ];
    assert!(total(&after, "apiserver_request_total", &custom) >= 1.0);
    for sample in &after {
        for value in sample.labels.values() {
            assert!(
                !value.contains("acme-secret") && !value.contains("widget"),
                "{sample:?}"
            );
            if sample.name != "vcluster_tenant_requests_total" {
                assert_ne!(value, "tenant-a", "{sample:?}");
            }
        }
    }
}

#[test]
fn a_watch_is_long_running_while_it_lasts() {
    let (served, opened) = Served::start(&["t"]);
    let k = admin(&served, &opened[0], "admin");
    let watches = |samples: &[Sample]| {
        let with = [
            ("verb", "WATCH"),
            ("resource", "configmaps"),
            ("scope", "namespace"),
        ];
        total(samples, "apiserver_longrunning_requests", &with)
    };
    let mut watch = k
        .command(&["get", "configmaps", "--watch"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start kubectl");
    let during = k.eventually(&["get", "--raw", "/metrics"], |text| {
        watches(&parse(text)) == 1.0
    });
    let during = parse(&during);
    assert_eq!(
        total(&during, "apiserver_request_total", &[("verb", "WATCH")]),
        0.0,
        "a watch is counted when it ends, as upstream counts it"
    );
    watch.kill().expect("stop kubectl");
    watch.wait().expect("kubectl stopped");
    let ended = k.eventually(&["get", "--raw", "/metrics"], |text| {
        watches(&parse(text)) == 0.0
    });
    let ended = parse(&ended);
    let watched = [
        ("verb", "WATCH"),
        ("resource", "configmaps"),
        ("code", "200"),
    ];
    assert_eq!(total(&ended, "apiserver_request_total", &watched), 1.0);
    assert_eq!(
        total(
            &ended,
            "apiserver_request_duration_seconds_count",
            &watched[..2]
        ),
        1.0
    );
}

/// Reads `/metrics` with the kubeconfig named by the first argument; prints the status.
const ANONYMOUS: &str = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
api = client.ApiClient()
r = api.call_api("GET", api.configuration.host + "/metrics")
print(r.status, r.read().decode())
"#;

#[test]
fn metrics_are_refused_without_a_credential_or_the_rbac_rule() {
    let (served, opened) = Served::start(&["t"]);
    let tenant = &opened[0];
    // kubectl will not send a request without a credential (it asks for a password): the
    // Python client does.
    let nobody = user(&served, tenant, None, "nobody");
    let out = std::process::Command::new(vcluster_testkit::clients::python_bin())
        .args(["-c", ANONYMOUS])
        .arg(&nobody.kubeconfig)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("401"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = user(&served, tenant, Some(("alice", &[])), "alice");
    let refused = alice.fails(&["get", "--raw", "/metrics"]);
    assert!(
        refused.contains(r#"forbidden: User "alice" cannot get path "/metrics""#),
        "{refused}"
    );
    // Upstream's system:monitoring role is bootstrapped: its group may read them.
    let monitoring = user(
        &served,
        tenant,
        Some(("prometheus", &["system:monitoring"])),
        "prometheus",
    );
    let samples = scrape(&monitoring);
    let counted = |code| {
        total(
            &samples,
            "apiserver_request_total",
            &[("subresource", "/metrics"), ("code", code)],
        )
    };
    assert_eq!(counted("401"), 1.0);
    assert_eq!(counted("403"), 1.0);
}

/// Serves `tenants` with `requests(i)` requests made to the `i`-th (by kube-rs, which is
/// quicker than starting kubectl hundreds of times).
fn load(served: &Served, tenants: &[std::sync::Arc<Tenant>], requests: impl Fn(usize) -> usize) {
    served.runtime.block_on(async {
        for (i, tenant) in tenants.iter().enumerate() {
            let client = served.kube_client(tenant).await;
            for _ in 0..requests(i) {
                client.apiserver_version().await.expect("version");
            }
        }
    });
}

#[test]
fn thirty_tenants_make_at_most_eleven_tenant_series() {
    let (served, _) = Served::start(&[]);
    let names: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    let opened: Vec<_> = served.runtime.block_on(async {
        let mut opened = Vec::new();
        for name in &names {
            opened.push(served.tenants.open_or_create(name).await.expect("tenant"));
        }
        opened
    });
    // The platform's tenant is the default one; tenant i gets i requests, so t29..t20 are
    // the busiest ten.
    served.tenants.set_default("t00");
    load(&served, &opened, |i| i);

    let platform = scrape(&admin(&served, &opened[0], "t00"));
    let series: Vec<&Sample> = matching(&platform, "vcluster_tenant_requests_total", &[]).collect();
    assert_eq!(series.len(), 11, "{series:?}");
    let shown: Vec<&str> = series.iter().map(|s| s.labels["tenant"].as_str()).collect();
    for i in 20..30 {
        let name = format!("t{i}");
        assert!(
            shown.contains(&name.as_str()),
            "{name} missing from {shown:?}"
        );
        let requests = total(
            &platform,
            "vcluster_tenant_requests_total",
            &[("tenant", &name)],
        );
        assert_eq!(requests, i as f64);
    }
    // The rest: t01..t19's requests, and t00's scrape (counted before it rendered).
    let other = total(
        &platform,
        "vcluster_tenant_requests_total",
        &[("tenant", "other")],
    );
    assert!(other > (1..20).sum::<usize>() as f64, "{other}");
    assert_eq!(total(&platform, "vcluster_tenants", &[]), 30.0);
    for sample in platform
        .iter()
        .filter(|s| s.name != "vcluster_tenant_requests_total")
    {
        assert!(
            !sample.labels.values().any(|v| names.contains(v)),
            "a tenant's name outside the top-N series: {sample:?}"
        );
    }

    // Through another tenant, its own name only: every other tenant is under `other`.
    let busy = scrape(&admin(&served, &opened[25], "t25"));
    let shown: Vec<&str> = matching(&busy, "vcluster_tenant_requests_total", &[])
        .map(|s| s.labels["tenant"].as_str())
        .collect();
    assert_eq!(shown, ["t25", "other"]);
    for sample in &busy {
        assert!(
            !sample
                .labels
                .values()
                .any(|v| names.contains(v) && v != "t25"),
            "another tenant's name: {sample:?}"
        );
    }
}

#[test]
fn lists_of_the_current_state_see_every_write_and_are_answered_from_the_watch_cache() {
    let (served, opened) = Served::start(&["tenant-a"]);
    let k = admin(&served, &opened[0], "admin");
    let store_lists = |k: &Kubectl| {
        let with = [
            ("operation", "list"),
            ("group", ""),
            ("resource", "configmaps"),
        ];
        total(&scrape(k), "etcd_request_duration_seconds_count", &with)
    };
    k.ok(&["create", "configmap", "first"]);
    let before = store_lists(&k);
    // Each list, with no resourceVersion (kubectl's), must see the write just before it.
    for i in 0..10 {
        let name = format!("m{i}");
        k.ok(&["create", "configmap", &name]);
        let listed = k.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]);
        assert!(
            listed.contains(&format!(r#""name":"{name}""#)),
            "a list did not see the write before it: {listed}"
        );
    }
    // The watch cache answered them: at most its own load read the store (every one of
    // them did before).
    let read = store_lists(&k) - before;
    assert!(read <= 1.0, "{read} of 10 lists read the store");
}
