//! A work queue of object keys, as upstream's: a key queued many times is reconciled once,
//! never by two workers at once, and again if it changed while being reconciled. Each
//! queue reports client-go's work-queue metrics (`metrics.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use vcluster_core::object::meta_str;
use vcluster_core::status::Reason;

use crate::metrics::QueueMetrics;
use crate::{Api, Requeue, Result};

/// A queue whose reconcile works on a key through the API.
pub(crate) fn reconciler<F>(api: Arc<dyn Api>, f: fn(Arc<dyn Api>, Key) -> F) -> Reconcile<Key>
where
    F: Future<Output = Result<Requeue>> + Send + 'static,
{
    Arc::new(move |key| Box::pin(f(api.clone(), key)))
}

/// One object of one tenant: what a controller reconciles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub tenant: Arc<str>,
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// The key of an object (a cluster-scoped one's namespace is empty).
    pub(crate) fn of(tenant: &Arc<str>, object: &Value) -> Option<Self> {
        Some(Self {
            tenant: tenant.clone(),
            namespace: meta_str(object, "namespace").unwrap_or_default().to_owned(),
            name: meta_str(object, "name")?.to_owned(),
        })
    }
}

/// What a queue's workers do with a key.
pub(crate) type Reconcile<K> =
    Arc<dyn Fn(K) -> Pin<Box<dyn Future<Output = Result<Requeue>> + Send>> + Send + Sync>;

/// Each waiting key keeps the time it was added, for `workqueue_queue_duration_seconds`.
struct State<K> {
    pending: VecDeque<(K, Instant)>,
    queued: HashSet<K>,
    running: HashSet<K>,
    /// Keys queued again while running: queued when their reconcile ends.
    dirty: HashMap<K, Instant>,
}

impl<K> State<K> {
    /// What `workqueue_depth` counts: the keys waiting, held by a worker or not.
    fn depth(&self) -> i64 {
        (self.pending.len() + self.dirty.len()) as i64
    }
}

/// A queue and its workers; cloning shares them.
pub(crate) struct Queue<K = Key> {
    state: Arc<Mutex<State<K>>>,
    ready: Arc<Notify>,
    metrics: Arc<QueueMetrics>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            ready: self.ready.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Something a queue can hold.
pub(crate) trait QueueKey:
    Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + 'static
{
}
impl<K: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + 'static> QueueKey for K {}

/// How long a failed reconcile waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

impl<K: QueueKey> Queue<K> {
    pub(crate) fn start(workers: usize, reconcile: Reconcile<K>, metrics: QueueMetrics) -> Self {
        let queue = Self {
            state: Arc::new(Mutex::new(State {
                pending: VecDeque::new(),
                queued: HashSet::new(),
                running: HashSet::new(),
                dirty: HashMap::new(),
            })),
            ready: Arc::new(Notify::new()),
            metrics: Arc::new(metrics),
        };
        for _ in 0..workers {
            let (queue, reconcile) = (queue.clone(), reconcile.clone());
            tokio::spawn(async move {
                loop {
                    let key = queue.next().await;
                    let started = Instant::now();
                    let outcome = reconcile(key.clone()).await;
                    queue.metrics.reconciled(started.elapsed(), &outcome);
                    let again = match outcome {
                        Ok(again) => again,
                        // A lost race (a stale write, or a create beaten to its name):
                        // look again at once.
                        Err(e) if e.is(Reason::Conflict) || e.is(Reason::AlreadyExists) => {
                            Some(Duration::ZERO)
                        }
                        Err(e) => {
                            tracing::debug!(?key, error = %e.message, "reconcile failed; retrying");
                            Some(RETRY)
                        }
                    };
                    queue.done(&key);
                    if let Some(after) = again {
                        queue.add_after(key, after);
                    }
                }
            });
        }
        queue
    }

    pub(crate) fn add(&self, key: K) {
        let state = self.state.lock().expect("queue lock");
        let waiting = state.queued.contains(&key) || state.dirty.contains_key(&key);
        if !waiting {
            self.metrics.adds.inc();
        }
        self.push(state, key, Instant::now());
    }

    /// Queues `key`, added at `added`, unless it waits already.
    fn push(&self, mut state: std::sync::MutexGuard<'_, State<K>>, key: K, added: Instant) {
        if state.running.contains(&key) {
            state.dirty.entry(key).or_insert(added);
            self.metrics.depth.set(state.depth());
        } else if state.queued.insert(key.clone()) {
            state.pending.push_back((key, added));
            self.metrics.depth.set(state.depth());
            drop(state);
            self.ready.notify_one();
        }
    }

    pub(crate) fn add_after(&self, key: K, after: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            queue.add(key);
        });
    }

    async fn next(&self) -> K {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state.lock().expect("queue lock");
                if let Some((key, added)) = state.pending.pop_front() {
                    self.metrics
                        .queue_duration
                        .observe(added.elapsed().as_secs_f64());
                    self.metrics.depth.set(state.depth());
                    state.queued.remove(&key);
                    state.running.insert(key.clone());
                    if !state.pending.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    fn done(&self, key: &K) {
        let mut state = self.state.lock().expect("queue lock");
        state.running.remove(key);
        // Added again while it ran: it waits on, since it was added (and counted).
        if let Some(added) = state.dirty.remove(key) {
            self.push(state, key.clone(), added);
        }
    }
}
