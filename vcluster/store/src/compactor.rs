//! Compaction policy: which history to discard, for any backend.
//!
//! Like kube-apiserver's compactor, it samples the current revision periodically and
//! compacts to what the policy no longer needs to keep.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Backend, Revision};

/// What history to keep. With both limits set, history is kept while either wants it.
#[derive(Clone, Debug, Default)]
pub struct CompactionPolicy {
    /// Keep at least this many of the newest revisions.
    pub keep_revisions: Option<u64>,
    /// Keep every revision younger than this.
    pub keep_for: Option<Duration>,
}

pub struct Compactor {
    policy: CompactionPolicy,
    /// (when, current revision then), oldest first; only kept for `keep_for`.
    samples: VecDeque<(Instant, Revision)>,
    compacted: Revision,
}

impl Compactor {
    pub fn new(policy: CompactionPolicy) -> Self {
        Self {
            policy,
            samples: VecDeque::new(),
            compacted: 0,
        }
    }

    /// Records that the store is at `current` at `now`, and returns the revision to compact
    /// to, if the policy allows compacting past what was compacted before.
    pub fn plan(&mut self, now: Instant, current: Revision) -> Option<Revision> {
        let mut candidates = Vec::new();
        if let Some(n) = self.policy.keep_revisions {
            // Keeping n revisions means reads at current-n+1 ..= current still work.
            candidates.push(current.saturating_sub(n.saturating_sub(1)));
        }
        if let Some(age) = self.policy.keep_for {
            self.samples.push_back((now, current));
            // The newest sample at least `age` old: everything after it is younger.
            let old_enough = self
                .samples
                .iter()
                .rposition(|(at, _)| now.saturating_duration_since(*at) >= age);
            match old_enough {
                Some(i) => {
                    self.samples.drain(..i);
                    candidates.push(self.samples.front().map_or(0, |s| s.1));
                }
                None => candidates.push(0),
            }
        }
        let target = candidates.into_iter().min()?;
        (target > self.compacted).then_some(target)
    }

    /// Runs the policy against `backend` every `interval`, until the task is dropped.
    pub async fn run(mut self, backend: Arc<dyn Backend>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let current = match backend.current_revision().await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(error = %e, "compactor: cannot read the current revision");
                    continue;
                }
            };
            let Some(target) = self.plan(Instant::now(), current) else {
                continue;
            };
            match backend.compact(target).await {
                Ok(()) => {
                    tracing::debug!(revision = target, "compacted");
                    self.compacted = target;
                }
                Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_revisions() {
        let mut c = Compactor::new(CompactionPolicy {
            keep_revisions: Some(10),
            keep_for: None,
        });
        let now = Instant::now();
        assert_eq!(c.plan(now, 5), None, "nothing to discard yet");
        assert_eq!(c.plan(now, 100), Some(91));
        c.compacted = 91;
        assert_eq!(c.plan(now, 100), None, "already compacted there");
    }

    #[test]
    fn keeps_what_is_younger_than_the_age() {
        let mut c = Compactor::new(CompactionPolicy {
            keep_revisions: None,
            keep_for: Some(Duration::from_secs(60)),
        });
        let t0 = Instant::now();
        assert_eq!(c.plan(t0, 10), None);
        assert_eq!(c.plan(t0 + Duration::from_secs(30), 20), None);
        // At t0+60s the sample of t0 is a minute old: revisions after 10 are younger.
        assert_eq!(c.plan(t0 + Duration::from_secs(60), 30), Some(10));
        assert_eq!(c.plan(t0 + Duration::from_secs(95), 40), Some(20));
        assert_eq!(c.samples.len(), 3, "samples older than needed are dropped");
    }

    #[test]
    fn both_limits_keep_the_longer_history() {
        let mut c = Compactor::new(CompactionPolicy {
            keep_revisions: Some(5),
            keep_for: Some(Duration::from_secs(60)),
        });
        let t0 = Instant::now();
        c.plan(t0, 10);
        assert_eq!(c.plan(t0 + Duration::from_secs(61), 100), Some(10));
    }

    #[test]
    fn no_policy_never_compacts() {
        let mut c = Compactor::new(CompactionPolicy::default());
        assert_eq!(c.plan(Instant::now(), 1_000_000), None);
    }
}
