//! The store's operations, measured where every request's storage passes: each tenant's
//! [`Scoped`](vcluster_store::Scoped) view is wrapped in a [`Metered`] one when the tenant is
//! opened (`tenant.rs`), so that reads, writes and watches of clients and controllers alike
//! are timed once, in kube-apiserver's `etcd_request_duration_seconds`, whichever backend
//! (embedded or etcd) is below. The wrapper sits above the view because the keys it sees
//! there are the tenant's own (`/<group>/<plural>/...`), which name the resource, and
//! because the store crate then needs to know nothing of metrics.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use vcluster_core::registry::BUILTINS;
use vcluster_store::{
    Counted, Deleted, Error, KeyValue, LeaseId, Op, RangePage, RangeRequest, Result, Revision,
    Store, Txn, TxnOutcome, WatchStream,
};

use super::{Durations, Resource, durations};

/// An operation, by kube-apiserver's name for it where it has one, and the resource of
/// the key it reached (none for an operation of no key).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StoreLabels {
    operation: &'static str,
    resource: Resource,
}

impl EncodeLabelSet for StoreLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (group, _, resource) = self.resource.names();
        [
            ("operation", self.operation),
            ("group", group),
            ("resource", resource),
        ]
        .encode(encoder)
    }
}

/// Every built-in resource as its storage keys name it (group, plural), with its place in
/// [`BUILTINS`] (the first, where several versions share the key).
static BUILT_IN: LazyLock<HashMap<(&'static str, &'static str), u16>> = LazyLock::new(|| {
    let mut places = HashMap::new();
    for (at, rt) in BUILTINS.iter().enumerate() {
        let at = u16::try_from(at).expect("fewer than 65536 built-in types");
        places
            .entry((rt.group.as_str(), rt.plural.as_str()))
            .or_insert(at);
    }
    places
});

impl StoreLabels {
    fn of(operation: &'static str, key: &[u8]) -> Self {
        Self {
            operation,
            resource: resource_of(key),
        }
    }
}

/// The resource of a key or prefix inside a tenant (`/<group>/<plural>/...`, `core` for the
/// core group): a built-in, [`Resource::Custom`] for any other, none for a key that names
/// no resource.
fn resource_of(key: &[u8]) -> Resource {
    let Some(rest) = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix('/'))
    else {
        return Resource::None;
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(group), Some(plural)) = (parts.next(), parts.next()) else {
        return Resource::None;
    };
    let group = if group == "core" { "" } else { group };
    match BUILT_IN.get(&(group, plural)) {
        Some(&at) => Resource::BuiltIn(at),
        None if !plural.is_empty() => Resource::Custom,
        None => Resource::None,
    }
}

/// The outcomes counted as errors: a failure of the store, not a compare that lost or a
/// key that is (or is not) there, which callers expect and answer.
fn is_failure(e: &Error) -> bool {
    !matches!(
        e,
        Error::AlreadyExists { .. } | Error::NotFound { .. } | Error::Conflict { .. }
    )
}

/// `etcd_request_duration_seconds` and `etcd_request_errors_total`.
#[derive(Debug)]
pub(crate) struct StoreMetrics {
    durations: Durations<StoreLabels>,
    errors: Family<StoreLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            durations: durations(),
            errors: Family::default(),
        }
    }
}

impl StoreMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "etcd_request_duration_seconds",
            "How long store operations took, in seconds, by operation, group and resource (the embedded store's too, under etcd's name).",
            self.durations.clone(),
        );
        registry.register(
            "etcd_request_errors",
            "Store operations that failed, by operation, group and resource.",
            self.errors.clone(),
        );
    }
}

/// A store view whose every operation is timed.
pub(crate) struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<StoreMetrics>,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: Arc<StoreMetrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        key: &[u8],
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        let labels = StoreLabels::of(operation, key);
        self.metrics
            .durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result
            && is_failure(e)
        {
            self.metrics.errors.get_or_create(&labels).inc();
        }
        result
    }
}

/// The first key a transaction writes (or compares), which names its resource.
fn txn_key(txn: &Txn) -> Bytes {
    txn.ops
        .first()
        .map(Op::key)
        .or(txn.compares.first().map(|c| &c.key))
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl Store for Metered {
    async fn get_at(&self, key: &[u8], revision: Option<Revision>) -> Result<Option<KeyValue>> {
        self.timed("get", key, self.inner.get_at(key, revision))
            .await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangePage> {
        let prefix = request.prefix.clone();
        self.timed("list", &prefix, self.inner.range(request)).await
    }

    async fn count(&self, prefix: &[u8]) -> Result<Counted> {
        self.timed("count", prefix, self.inner.count(prefix)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let key = txn_key(&txn);
        self.timed("txn", &key, self.inner.txn(txn)).await
    }

    async fn watch(&self, prefix: &[u8], after: Revision) -> Result<WatchStream> {
        self.timed("watch", prefix, self.inner.watch(prefix, after))
            .await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.timed("currentRevision", b"", self.inner.current_revision())
            .await
    }

    async fn grant_lease(&self, ttl_seconds: u64) -> Result<LeaseId> {
        self.timed("grantLease", b"", self.inner.grant_lease(ttl_seconds))
            .await
    }

    // The single-key writes are passed down whole (not left to the default methods, which
    // would call `txn` here), so that each is timed once under its own name.

    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        let named = key.clone();
        self.timed("create", &named, self.inner.create(key, value, lease))
            .await
    }

    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Option<Revision>,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        let named = key.clone();
        self.timed(
            "update",
            &named,
            self.inner.update(key, value, expected, lease),
        )
        .await
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<Deleted> {
        let named = key.clone();
        self.timed("delete", &named, self.inner.delete(key, expected))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::CUSTOM;
    use super::*;

    #[test]
    fn keys_name_built_in_resources_and_hide_custom_ones() {
        let names = |key: &[u8]| {
            let (group, _, resource) = resource_of(key).names();
            (group, resource)
        };
        assert_eq!(names(b"/core/pods/default/web"), ("", "pods"));
        assert_eq!(names(b"/apps/deployments/"), ("apps", "deployments"));
        assert_eq!(names(b"/acme.example/widgets/default/w"), (CUSTOM, CUSTOM));
        assert_eq!(names(b"/core/"), ("", ""));
        assert_eq!(names(b""), ("", ""));
    }
}
