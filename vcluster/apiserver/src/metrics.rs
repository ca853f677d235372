//! Prometheus metrics, served at `/metrics` in kube-apiserver's names: requests by verb,
//! resource, scope and code, their durations, long-running requests, requests in flight,
//! the store's operations (`store.rs`), and the controllers' work queues (registered by
//! `vcluster-controllers`).
//!
//! One process serves many tenants, so what it measures is the process: no series carries
//! a tenant's name, nor anything a tenant chose (a custom resource's group or plural, an
//! unknown path), since each would add series without bound (kcp's issue #4007) and show
//! one tenant's names to another. The one exception is `vcluster_tenant_requests_total`:
//! the ten tenants with the most requests by name, the rest summed as `tenant="other"`.
//!
//! Recording a request costs two family lookups (a read lock and a hash of a few bytes:
//! the labels are small enums and registry constants) and no allocation, about 0.3 µs; a
//! series is allocated once, the first time it is seen.

pub(crate) mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri, header};
use http_body_util::BodyExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use vcluster_core::registry::{BUILTINS, ResourceType};

use crate::http::Body;
use crate::inflight::Kind;

/// The `component` label of every request series: this process is the API server.
const COMPONENT: &str = "apiserver";

/// The group and resource that stand for every custom resource of every tenant: their
/// names are the tenants' own, and there is no bound on how many there are.
pub(crate) const CUSTOM: &str = "_custom";

/// kube-apiserver's buckets for request (and store) durations, in seconds: fine below a
/// second for its latency objectives, up to the minute a request may take.
pub(crate) const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// How many tenants `vcluster_tenant_requests_total` names.
pub(crate) const TOP_TENANTS: usize = 10;

/// The `tenant` label of the series that sums every tenant not named.
const OTHER: &str = "other";

/// A family of histograms with [`DURATION_BUCKETS`].
pub(crate) type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

pub(crate) fn durations<L: Clone + std::hash::Hash + Eq>() -> Durations<L> {
    Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS))
}

/// What a request is, in kube-apiserver's labels. Each label is a small enum or a name
/// from the built-in registry, so a label set is copied, never allocated, and hashes in a
/// few bytes: a family lookup hashes it on every request.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub(crate) struct RequestLabels {
    verb: Verb,
    dry_run: DryRun,
    resource: Resource,
    /// The subresource's name, or a non-resource request's path pattern.
    subresource: &'static str,
    scope: Scope,
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
enum Verb {
    #[default]
    Get,
    List,
    Watch,
    Post,
    Put,
    Patch,
    Apply,
    Delete,
    DeleteCollection,
    Connect,
    Other,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::List => "LIST",
            Self::Watch => "WATCH",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Apply => "APPLY",
            Self::Delete => "DELETE",
            Self::DeleteCollection => "DELETECOLLECTION",
            Self::Connect => "CONNECT",
            Self::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
enum DryRun {
    #[default]
    No,
    All,
    Invalid,
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
enum Scope {
    /// A non-resource request.
    #[default]
    None,
    Resource,
    Namespace,
    Cluster,
}

/// The resource a request named: none (or one not served), a built-in (its place in
/// [`BUILTINS`], which has its group, version and plural), or any custom one.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
enum Resource {
    #[default]
    None,
    BuiltIn(u16),
    Custom,
}

impl Resource {
    /// Its group, version and resource labels.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::None => ("", "", ""),
            Self::BuiltIn(at) => {
                let rt = &BUILTINS[usize::from(at)];
                (&rt.group, &rt.version, &rt.plural)
            }
            Self::Custom => (CUSTOM, "", CUSTOM),
        }
    }
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (group, version, resource) = self.resource.names();
        let dry_run = match self.dry_run {
            DryRun::No => "",
            DryRun::All => "All",
            DryRun::Invalid => "invalid",
        };
        [
            ("verb", self.verb.as_str()),
            ("dry_run", dry_run),
            ("group", group),
            ("version", version),
            ("resource", resource),
            ("subresource", self.subresource),
            ("scope", self.scope()),
            ("component", COMPONENT),
        ]
        .encode(encoder)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: u16,
}

/// `apiserver_longrunning_requests` has the request labels but for `dry_run`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct LongRunningLabels(RequestLabels);

impl EncodeLabelSet for LongRunningLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (group, version, resource) = self.0.resource.names();
        [
            ("verb", self.0.verb.as_str()),
            ("group", group),
            ("version", version),
            ("resource", resource),
            ("subresource", self.0.subresource),
            ("scope", self.0.scope()),
            ("component", COMPONENT),
        ]
        .encode(encoder)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestKind {
    request_kind: &'static str,
}

/// The subresources kube-apiserver counts as `CONNECT`: streams to a pod or node.
const CONNECT_SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward", "proxy"];

impl RequestLabels {
    /// A request known only by its method: a non-resource path until routed further.
    fn new(method: &Method, uri: &Uri) -> Self {
        Self {
            verb: match *method {
                Method::GET | Method::HEAD => Verb::Get,
                Method::POST => Verb::Post,
                Method::PUT => Verb::Put,
                Method::PATCH => Verb::Patch,
                Method::DELETE => Verb::Delete,
                _ => Verb::Other,
            },
            dry_run: dry_run(uri),
            ..Self::default()
        }
    }

    /// A non-resource request, by the path it was routed to (a pattern where the path
    /// has a variable part, so that no name a client sends becomes a label).
    pub(crate) fn path(&mut self, path: &'static str) {
        self.subresource = path;
    }

    /// A resource request, by the shape of its path (before its type is known): the verb
    /// and scope, as kube-apiserver tells them apart.
    pub(crate) fn resource_request(
        &mut self,
        uri: &Uri,
        headers: &HeaderMap,
        namespaced: bool,
        named: bool,
        subresource: Option<&str>,
    ) {
        self.scope = if named || self.verb == Verb::Post {
            Scope::Resource
        } else if namespaced {
            Scope::Namespace
        } else {
            Scope::Cluster
        };
        self.verb = match self.verb {
            _ if subresource.is_some_and(|s| CONNECT_SUBRESOURCES.contains(&s)) => Verb::Connect,
            Verb::Get if !named && query_is_true(uri, "watch") => Verb::Watch,
            Verb::Get if !named => Verb::List,
            Verb::Patch if is_apply(headers) => Verb::Apply,
            Verb::Delete if !named => Verb::DeleteCollection,
            verb => verb,
        };
    }

    /// The type a resource request resolved to: a built-in (found by pointer: the served
    /// types share the registry's), or [`CUSTOM`].
    pub(crate) fn resource(&mut self, rt: &Arc<ResourceType>, subresource: Option<&str>) {
        self.resource = BUILTINS
            .iter()
            .position(|b| Arc::ptr_eq(b, rt))
            .and_then(|at| u16::try_from(at).ok())
            .map_or(Resource::Custom, Resource::BuiltIn);
        // Subresource names are the registry's constants, for custom types too.
        self.subresource = subresource
            .and_then(|name| rt.subresource(name))
            .map_or("", |s| s.name);
    }

    fn long_running(&self) -> bool {
        matches!(self.verb, Verb::Watch | Verb::Connect)
    }

    fn read_only(&self) -> bool {
        matches!(self.verb, Verb::Get | Verb::List)
    }

    /// What the in-flight limit counts the request as, by the same verbs.
    pub(crate) fn in_flight_kind(&self) -> Kind {
        if self.long_running() {
            Kind::LongRunning
        } else if self.read_only() {
            Kind::ReadOnly
        } else {
            Kind::Mutating
        }
    }

    fn scope(&self) -> &'static str {
        match self.scope {
            Scope::None => "",
            Scope::Resource => "resource",
            Scope::Namespace => "namespace",
            Scope::Cluster => "cluster",
        }
    }

    fn without_dry_run(&self) -> LongRunningLabels {
        LongRunningLabels(Self {
            dry_run: DryRun::No,
            ..*self
        })
    }
}

/// The `dry_run` label: `All` (the only valid value), `invalid`, or empty.
fn dry_run(uri: &Uri) -> DryRun {
    let Some(query) = uri.query().filter(|q| q.contains("dryRun")) else {
        return DryRun::No;
    };
    let (mut any, mut all) = (false, true);
    for (_, value) in form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "dryRun") {
        any = true;
        all &= value == "All";
    }
    match (any, all) {
        (false, _) => DryRun::No,
        (true, true) => DryRun::All,
        (true, false) => DryRun::Invalid,
    }
}

/// Whether the last `name` of the query is `true` or `1` (how the handlers read it).
fn query_is_true(uri: &Uri, name: &str) -> bool {
    uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == name)
            .last()
            .is_some_and(|(_, v)| v == "true" || v == "1")
    })
}

fn is_apply(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(crate::http::APPLY))
}

/// The process's metrics. The controllers' are theirs, registered with the others at
/// each scrape.
pub(crate) struct Metrics {
    requests: Family<(RequestLabels, Code), Counter>,
    durations: Durations<RequestLabels>,
    long_running: Family<LongRunningLabels, Gauge>,
    in_flight: Family<RequestKind, Gauge>,
    read_only: Gauge,
    mutating: Gauge,
    pub(crate) store: Arc<store::StoreMetrics>,
    pub(crate) controllers: vcluster_controllers::Metrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let in_flight = Family::<RequestKind, Gauge>::default();
        // Both kinds are always present, as upstream reports them, so they are made now
        // and kept, and a request updates them without a lookup.
        let kind = |request_kind| {
            in_flight
                .get_or_create(&RequestKind { request_kind })
                .clone()
        };
        Self {
            read_only: kind("readOnly"),
            mutating: kind("mutating"),
            in_flight,
            requests: Family::default(),
            durations: durations(),
            long_running: Family::default(),
            store: Arc::default(),
            controllers: vcluster_controllers::Metrics::default(),
        }
    }
}

impl Metrics {
    /// Starts measuring a request.
    pub(crate) fn track(self: &Arc<Self>, method: &Method, uri: &Uri) -> Tracker<'_> {
        Tracker {
            metrics: self,
            started: Instant::now(),
            labels: RequestLabels::new(method, uri),
            in_flight: None,
        }
    }

    fn record(&self, labels: &RequestLabels, code: u16, took: Duration) {
        self.requests.get_or_create(&(*labels, Code { code })).inc();
        self.durations
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// The exposition of every metric, with `tenants`' request counts: OpenMetrics text if
    /// `openmetrics`, else Prometheus text (what a client gets that asks for neither).
    pub(crate) fn render(&self, tenants: TenantRequests, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Requests served, by verb, dry run, group, version, resource, subresource, scope, component and HTTP status code.",
            self.requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "How long requests took to answer, in seconds, by verb, dry run, group, version, resource, subresource, scope and component; a watch or a stream is measured until it ends.",
            self.durations.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Watches and streams being served now, by verb, group, version, resource, subresource, scope and component.",
            self.long_running.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Requests being answered now, other than watches and streams, by kind (readOnly or mutating).",
            self.in_flight.clone(),
        );
        self.store.register(&mut registry);
        self.controllers.register(&mut registry);
        registry.register_collector(Box::new(tenants));
        let mut out = String::new();
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        written.expect("writing to a String does not fail");
        out
    }
}

/// The content types of the two expositions.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub(crate) const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A request being measured: its labels are filled in as it is routed, and
/// [`Tracker::finish`] records it.
pub(crate) struct Tracker<'a> {
    metrics: &'a Arc<Metrics>,
    started: Instant,
    pub(crate) labels: RequestLabels,
    in_flight: Option<InFlight<'a>>,
}

/// One request in flight, counted until dropped (also when the client goes away first).
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<'a> Tracker<'a> {
    /// Counts the request in flight from now, once its verb is known: watches and
    /// streams, which may last for hours, are counted as long-running instead.
    pub(crate) fn in_flight(&mut self) {
        if self.labels.long_running() || self.in_flight.is_some() {
            return;
        }
        let metrics: &'a Metrics = self.metrics;
        let gauge = if self.labels.read_only() {
            &metrics.read_only
        } else {
            &metrics.mutating
        };
        gauge.inc();
        self.in_flight = Some(InFlight(gauge));
    }

    /// Records the request answered with `response`. A watch or stream that started is
    /// recorded when its body ends, as kube-apiserver records it when it returns, and is
    /// counted long-running until then.
    pub(crate) fn finish(self, response: Response<Body>) -> Response<Body> {
        let code = response.status().as_u16();
        if !(self.labels.long_running() && response.status().is_success()) {
            self.metrics
                .record(&self.labels, code, self.started.elapsed());
            return response;
        }
        let labels = self.labels.without_dry_run();
        self.metrics.long_running.get_or_create(&labels).inc();
        let ended = StreamEnded {
            metrics: self.metrics.clone(),
            labels: self.labels,
            code,
            started: self.started,
        };
        response.map(|body| {
            Streaming {
                body,
                _ended: ended,
            }
            .boxed()
        })
    }
}

/// Records a long-running request when its body is dropped.
struct StreamEnded {
    metrics: Arc<Metrics>,
    labels: RequestLabels,
    code: u16,
    started: Instant,
}

impl Drop for StreamEnded {
    fn drop(&mut self) {
        let labels = self.labels.without_dry_run();
        if let Some(gauge) = self.metrics.long_running.get(&labels) {
            gauge.dec();
        }
        self.metrics
            .record(&self.labels, self.code, self.started.elapsed());
    }
}

/// A response body that records its request when it is dropped: at its end, or when
/// the client goes away.
struct Streaming {
    body: Body,
    _ended: StreamEnded,
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// `vcluster_tenant_requests_total` and `vcluster_tenants` as one scrape shows them.
#[derive(Debug)]
pub(crate) struct TenantRequests {
    /// The tenants shown by name, most requests first.
    named: Vec<(String, u64)>,
    /// The requests of every other tenant.
    other: u64,
    tenants: usize,
}

impl TenantRequests {
    /// The series for a scrape, from every open tenant's name and request count: the
    /// [`TOP_TENANTS`] tenants with the most requests by name and one `other` series for
    /// the rest, so that the series are bounded however many tenants there are.
    ///
    /// `viewer` is the tenant the scrape came through when that is not the platform's
    /// (the default tenant): it sees its own name, if it is among the top ones, and never
    /// another tenant's. A tenant named `other` is always counted under `other`, so that
    /// no two series have the same labels.
    ///
    /// A tenant that enters the top moves its requests out of `other`, which then goes
    /// down: Prometheus takes that for a counter reset. It happens only when the order of
    /// the busiest tenants changes, and bounding the series is worth it.
    pub(crate) fn new(mut counts: Vec<(String, u64)>, viewer: Option<&str>) -> Self {
        let tenants = counts.len();
        // The most requests first; ties by name, so that the same counts give the same
        // series at every scrape.
        counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut named = Vec::new();
        let mut other = 0;
        for (place, (name, requests)) in counts.into_iter().enumerate() {
            let shown =
                place < TOP_TENANTS && name != OTHER && viewer.is_none_or(|viewer| viewer == name);
            if shown {
                named.push((name, requests));
            } else {
                other += requests;
            }
        }
        Self {
            named,
            other,
            tenants,
        }
    }
}

impl Collector for TenantRequests {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "vcluster_tenant_requests",
            "Requests received by the tenants with the most requests, by tenant; every other tenant's are summed under tenant=\"other\".",
            None,
            counter.metric_type(),
        )?;
        let series = self
            .named
            .iter()
            .map(|(name, n)| (name.as_str(), *n))
            .chain(std::iter::once((OTHER, self.other)));
        for (tenant, requests) in series {
            let labels = [("tenant", tenant)];
            ConstCounter::new(requests).encode(family.encode_family(&labels)?)?;
        }
        let tenants = ConstGauge::new(self.tenants as i64);
        let gauge = encoder.encode_descriptor(
            "vcluster_tenants",
            "Tenants open in this process.",
            None,
            tenants.metric_type(),
        )?;
        tenants.encode(gauge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: Method, path: &str, named: bool, namespaced: bool) -> RequestLabels {
        let uri: Uri = path.parse().expect("uri");
        let mut labels = RequestLabels::new(&method, &uri);
        labels.resource_request(&uri, &HeaderMap::new(), namespaced, named, None);
        labels
    }

    #[test]
    fn verbs_and_scopes_are_upstreams() {
        let get = Method::GET;
        let cases = [
            (
                labels(get.clone(), "/api/v1/pods", false, false),
                ("LIST", "cluster"),
            ),
            (
                labels(
                    get.clone(),
                    "/api/v1/namespaces/a/pods?watch=true",
                    false,
                    true,
                ),
                ("WATCH", "namespace"),
            ),
            (
                labels(get, "/api/v1/namespaces/a/pods/p", true, true),
                ("GET", "resource"),
            ),
            (
                labels(Method::POST, "/api/v1/namespaces/a/pods", false, true),
                ("POST", "resource"),
            ),
            (
                labels(Method::DELETE, "/api/v1/namespaces/a/pods", false, true),
                ("DELETECOLLECTION", "namespace"),
            ),
        ];
        for (got, (verb, scope)) in cases {
            assert_eq!((got.verb.as_str(), got.scope()), (verb, scope), "{got:?}");
        }
        let uri: Uri = "/api/v1/namespaces/a/pods/p/exec".parse().expect("uri");
        let mut exec = RequestLabels::new(&Method::POST, &uri);
        exec.resource_request(&uri, &HeaderMap::new(), true, true, Some("exec"));
        assert_eq!(exec.verb, Verb::Connect);
        let dry: Uri = "/api/v1/namespaces/a/pods?dryRun=All".parse().expect("uri");
        assert_eq!(RequestLabels::new(&Method::POST, &dry).dry_run, DryRun::All);
        let bad: Uri = "/api/v1/namespaces/a/pods?dryRun=Some"
            .parse()
            .expect("uri");
        let bad = RequestLabels::new(&Method::POST, &bad);
        assert_eq!(bad.dry_run, DryRun::Invalid);
    }

    #[test]
    fn a_custom_resource_is_never_named() {
        let uri: Uri = "/apis/acme.example/v1/widgets".parse().expect("uri");
        let mut labels = RequestLabels::new(&Method::GET, &uri);
        let widget = Arc::new(ResourceType {
            group: "acme.example".into(),
            plural: "widgets".into(),
            subresources: Vec::new(),
            ..(**BUILTINS.first().expect("a built-in")).clone()
        });
        labels.resource(&widget, Some("status"));
        assert_eq!(labels.resource.names(), (CUSTOM, "", CUSTOM));
        assert_eq!(
            labels.subresource, "",
            "a subresource the type does not have is no label either"
        );
        let pods = vcluster_core::registry::find("", "v1", "pods").expect("pods");
        labels.resource(&pods, Some("status"));
        assert_eq!(labels.resource.names(), ("", "v1", "pods"));
        assert_eq!(labels.subresource, "status");
    }

    #[test]
    fn both_expositions_are_rendered() {
        let metrics = Arc::new(Metrics::default());
        let uri: Uri = "/api/v1/namespaces/a/pods/p".parse().expect("uri");
        let mut tracker = metrics.track(&Method::GET, &uri);
        tracker
            .labels
            .resource_request(&uri, &HeaderMap::new(), true, true, None);
        drop(tracker.finish(Response::new(crate::http::full(Bytes::new()))));
        let tenants = || TenantRequests::new(vec![("a".into(), 1)], None);
        let openmetrics = metrics.render(tenants(), true);
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        assert!(openmetrics.contains("# TYPE apiserver_request counter\n"));
        let text = metrics.render(tenants(), false);
        assert!(
            text.contains("# TYPE apiserver_request_total counter\n"),
            "{text}"
        );
        assert!(text.contains(r#"vcluster_tenant_requests_total{tenant="a"} 1"#));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn thirty_tenants_make_at_most_eleven_series_and_others_see_no_name() {
        let counts: Vec<(String, u64)> = (0..30).map(|i| (format!("t{i}"), i)).collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let platform = TenantRequests::new(counts.clone(), None);
        assert_eq!(platform.named.len(), TOP_TENANTS);
        assert_eq!(platform.named[0], ("t29".to_owned(), 29));
        assert_eq!(
            platform.named.iter().map(|(_, n)| n).sum::<u64>() + platform.other,
            total
        );
        let busy = TenantRequests::new(counts.clone(), Some("t25"));
        assert_eq!(busy.named, vec![("t25".to_owned(), 25)]);
        assert_eq!(busy.other, total - 25);
        let quiet = TenantRequests::new(counts, Some("t3"));
        assert!(quiet.named.is_empty(), "t3 is not among the top ten");
        assert_eq!(quiet.other, total);
    }
}
