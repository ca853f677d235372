//! The controllers' metrics, in client-go's work-queue names (`workqueue_depth`,
//! `workqueue_adds_total`, `workqueue_queue_duration_seconds`,
//! `workqueue_work_duration_seconds`, `workqueue_retries_total`, by queue `name`) and
//! controller-runtime's reconcile counts (`controller_runtime_reconcile_total` by
//! `controller` and `result`, `controller_runtime_reconcile_errors_total`). This crate does
//! not serve them: whoever runs the controllers registers them with [`Metrics::register`]
//! in the registry it serves (the API server's `/metrics`).
//!
//! Every label is a controller's name, a constant: one queue serves every tenant, so the
//! series do not grow with tenants.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Requeue;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Queue {
    name: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Controller {
    controller: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    controller: &'static str,
    result: &'static str,
}

type Histograms = Family<Queue, Histogram, fn() -> Histogram>;

/// client-go's buckets for queue waits and work: ten powers of ten from 10 ns to 10 s.
fn queue_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

/// The metrics of every queue of one run of the controllers. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    depth: Family<Queue, Gauge>,
    adds: Family<Queue, Counter>,
    queue_duration: Histograms,
    work_duration: Histograms,
    retries: Family<Queue, Counter>,
    reconciles: Family<Outcome, Counter>,
    errors: Family<Controller, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            depth: Family::default(),
            adds: Family::default(),
            queue_duration: Family::new_with_constructor(queue_histogram),
            work_duration: Family::new_with_constructor(queue_histogram),
            retries: Family::default(),
            reconciles: Family::default(),
            errors: Family::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `registry` (they stay shared with the queues).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "workqueue_depth",
            "Keys waiting in the work queue, by queue.",
            self.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Keys added to the work queue (a key already waiting is not added again), by queue.",
            self.adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long keys waited in the work queue before a worker took them, in seconds, by queue.",
            self.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long reconciling a key took, in seconds, by queue.",
            self.work_duration.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Keys queued again after a failed reconcile, by queue.",
            self.retries.clone(),
        );
        registry.register(
            "controller_runtime_reconcile",
            "Reconciles, by controller and result (success, error, requeue, requeue_after).",
            self.reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Reconciles that failed, by controller.",
            self.errors.clone(),
        );
    }

    /// The series of the queue of the controller in `module`, looked up once so that the
    /// queue updates them without a lookup.
    pub(crate) fn queue(&self, module: &'static str) -> QueueMetrics {
        let name = queue_name(module);
        let queue = Queue { name };
        let outcome = |result| {
            let labels = Outcome {
                controller: name,
                result,
            };
            self.reconciles.get_or_create(&labels).clone()
        };
        QueueMetrics {
            depth: self.depth.get_or_create(&queue).clone(),
            adds: self.adds.get_or_create(&queue).clone(),
            queue_duration: self.queue_duration.get_or_create(&queue).clone(),
            work_duration: self.work_duration.get_or_create(&queue).clone(),
            retries: self.retries.get_or_create(&queue).clone(),
            success: outcome("success"),
            error: outcome("error"),
            requeue: outcome("requeue"),
            requeue_after: outcome("requeue_after"),
            errors: self
                .errors
                .get_or_create(&Controller { controller: name })
                .clone(),
        }
    }
}

/// The queue name of the controller in `module`: its counterpart's in
/// kube-controller-manager where one controller here does what one queue does there, so
/// that dashboards made for upstream find it.
fn queue_name(module: &'static str) -> &'static str {
    match module {
        "endpoints" => "endpoint",
        "resourcequota" => "resourcequota_primary",
        "hpa" => "horizontalpodautoscaler",
        "serviceaccounts" => "serviceaccount",
        "crd" => "crd_finalizer",
        "gc" => "garbagecollector",
        other => other,
    }
}

/// One queue's series.
#[derive(Debug)]
pub(crate) struct QueueMetrics {
    pub(crate) depth: Gauge,
    pub(crate) adds: Counter,
    pub(crate) queue_duration: Histogram,
    work_duration: Histogram,
    retries: Counter,
    success: Counter,
    error: Counter,
    requeue: Counter,
    requeue_after: Counter,
    errors: Counter,
}

impl QueueMetrics {
    /// Records a reconcile that took `took` and ended with `outcome` (`Err` for a failure,
    /// which the queue retries).
    pub(crate) fn reconciled<E>(&self, took: Duration, outcome: &Result<Requeue, E>) {
        self.work_duration.observe(took.as_secs_f64());
        let result = match outcome {
            Ok(None) => &self.success,
            Ok(Some(after)) if after.is_zero() => &self.requeue,
            Ok(Some(_)) => &self.requeue_after,
            Err(_) => {
                self.errors.inc();
                self.retries.inc();
                &self.error
            }
        };
        result.inc();
    }
}
