//! The Job controller, after upstream's: pods are started until `completions` of them
//! succeed (each index once, for `completionMode: Indexed`), at most `parallelism` at a
//! time; more than `backoffLimit` failures or a passed `activeDeadlineSeconds` fail the
//! Job; a suspended Job's pods are deleted. The status carries the counts, `startTime`,
//! `completionTime`, `completedIndexes` and the `SuccessCriteriaMet`/`Complete` and
//! `FailureTarget`/`Failed` conditions that `kubectl wait` and helm's hooks wait on. A
//! finished Job with `ttlSecondsAfterFinished` is deleted when that has passed.
//!
//! Upstream counts finished pods through a tracking finalizer, so that counts survive the
//! pods' deletion; here a count never goes down (the larger of the status's and the pods'),
//! which holds while finished pods are kept, as the controller keeps them.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value, json};
use vcluster_core::object::{is_deleting, meta_str};

use crate::pods::{self, int};
use crate::queue::{Key, Queue};
use crate::{Api, Change, EventType, Requeue, Resource, Result};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "job-controller";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("batch", "jobs"));
static PODS: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "pods"));

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The wait before a failed pod is replaced: upstream's 10 s, doubled per failure, at
/// most 6 minutes.
fn backoff(failures: i64) -> Duration {
    let exponent = u32::try_from((failures - 1).clamp(0, 6)).unwrap_or(0);
    Duration::from_secs((10 * 2u64.pow(exponent)).min(360))
}

pub(crate) fn watch(change: &Change, queue: &Queue) {
    crate::queue_for(change, queue, &RESOURCE, &PODS, "Job");
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    sync(&*api, &key).await
}

fn condition_true(job: &Value, kind: &str) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Seconds since an RFC 3339 time (0 if it does not parse).
fn seconds_since(time: Option<&str>, now: jiff::Timestamp) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| now.duration_since(t).as_secs())
}

fn requeue_in(seconds: i64) -> Requeue {
    Some(Duration::from_secs(
        u64::try_from(seconds.max(0)).unwrap_or(0),
    ))
}

async fn sync(api: &dyn Api, key: &Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let Some(job) = api.get(tenant, &RESOURCE, namespace, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&job) {
        return Ok(None);
    }
    let now = pods::now();
    if condition_true(&job, "Complete") || condition_true(&job, "Failed") {
        return expire(api, tenant, &job, now).await;
    }
    let owned: Vec<Value> = api
        .list(tenant, &PODS, namespace)
        .await?
        .into_iter()
        .filter(|pod| pods::controlled_by(pod, &job))
        .collect();
    let active: Vec<&Value> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let indexed = job.pointer("/spec/completionMode") == Some(&json!("Indexed"));
    let phase_count = |phase: &str| owned.iter().filter(|p| pods::phase(p) == phase).count();
    let succeeded = int(&job, "/status/succeeded", 0).max(count(phase_count("Succeeded")));
    let failed = int(&job, "/status/failed", 0).max(count(phase_count("Failed")));
    let completions = job.pointer("/spec/completions").and_then(Value::as_i64);
    let parallelism = int(&job, "/spec/parallelism", 1);
    let suspended = job.pointer("/spec/suspend") == Some(&json!(true));
    let completed: BTreeSet<i64> = owned
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded")
        .filter_map(index_of)
        .collect();

    let mut status = json!({
        "active": count(active.len()),
        "ready": count(active.iter().filter(|p| pods::is_ready(p)).count()),
        "succeeded": succeeded,
        "failed": failed,
        "terminating": 0,
    });
    let mut conditions: Vec<Value> = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let start = job
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| (!suspended).then(|| pods::stamp(now)));
    if let Some(start) = &start {
        status["startTime"] = json!(start);
    }
    if indexed {
        status["completedIndexes"] = json!(ranges(&completed));
    }
    let done = match completions {
        Some(n) if indexed => count(completed.len()) >= n,
        Some(n) => succeeded >= n,
        None => succeeded > 0 && active.is_empty(),
    };
    let deadline = job
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64);
    let running_for = seconds_since(start.as_deref(), now);
    let failure = if failed > int(&job, "/spec/backoffLimit", 6) {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| start.is_some() && running_for >= d) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let mut again = None;
    if let Some((reason, message)) = failure {
        delete_pods(api, tenant, &job, &active).await?;
        status["active"] = json!(0);
        status["ready"] = json!(0);
        set(&mut conditions, "FailureTarget", reason, message, now);
        if set(&mut conditions, "Failed", reason, message, now) {
            let events = api.recorder();
            events.record(
                tenant,
                COMPONENT,
                &job,
                EventType::Warning,
                reason,
                message.to_owned(),
            );
        }
    } else if done {
        delete_pods(api, tenant, &job, &active).await?;
        status["active"] = json!(0);
        status["ready"] = json!(0);
        status["completionTime"] = json!(pods::stamp(now));
        set(
            &mut conditions,
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        let completed = set(
            &mut conditions,
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        if completed {
            let message = "Job completed".to_owned();
            let events = api.recorder();
            events.record(
                tenant,
                COMPONENT,
                &job,
                EventType::Normal,
                "Completed",
                message,
            );
        }
    } else if suspended {
        delete_pods(api, tenant, &job, &active).await?;
        status["active"] = json!(0);
        set(
            &mut conditions,
            "Suspended",
            "JobSuspended",
            "Job suspended",
            now,
        );
    } else {
        conditions.retain(|c| c["type"] != "Suspended");
        let wanted = match completions {
            Some(n) if indexed => parallelism.min(n - count(completed.len())),
            Some(n) => parallelism.min(n - succeeded),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        let missing = wanted - count(active.len());
        // A failure holds the next pod back for a while.
        let last_failure = owned
            .iter()
            .filter(|p| pods::phase(p) == "Failed")
            .filter_map(finished_at)
            .max();
        let wait = last_failure.map_or(Duration::ZERO, |at| {
            let elapsed = now.duration_since(at).unsigned_abs();
            backoff(failed).saturating_sub(elapsed)
        });
        if missing > 0 && !wait.is_zero() {
            again = Some(wait);
        } else if missing > 0 {
            let busy: BTreeSet<i64> = active.iter().filter_map(|p| index_of(p)).collect();
            let mut free = (0..completions.unwrap_or(0))
                .filter(|i| !completed.contains(i) && !busy.contains(i));
            for _ in 0..missing {
                let index = if indexed {
                    let Some(i) = free.next() else { break };
                    Some(i)
                } else {
                    None
                };
                crate::create_pod(api, tenant, COMPONENT, &job, job_pod(&job, index)).await?;
            }
        }
        if let Some(d) = deadline {
            let left = requeue_in(d - running_for);
            again = match (again, left) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    if let Some(kept) = job.pointer("/status/uncountedTerminatedPods") {
        status["uncountedTerminatedPods"] = kept.clone();
    }
    crate::write_status(api, tenant, &RESOURCE, &job, status).await?;
    Ok(again)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn index_of(pod: &Value) -> Option<i64> {
    pod.pointer("/metadata/annotations")?
        .get(INDEX)?
        .as_str()?
        .parse()
        .ok()
}

/// When the pod's containers finished, as its status says.
fn finished_at(pod: &Value) -> Option<jiff::Timestamp> {
    pod.pointer("/status/containerStatuses")?
        .as_array()?
        .iter()
        .filter_map(|c| {
            c.pointer("/state/terminated/finishedAt")?
                .as_str()?
                .parse()
                .ok()
        })
        .max()
}

/// A pod of the Job (for an Indexed Job, of one index: annotated, labelled and with a
/// hostname for it).
fn job_pod(job: &Value, index: Option<i64>) -> Value {
    let mut pod = pods::from_template(job, &job["spec"]["template"]);
    if let Some(i) = index {
        let name = meta_str(job, "name").unwrap_or_default();
        pod["metadata"]["generateName"] = json!(format!("{name}-{i}-"));
        pod["metadata"]["annotations"][INDEX] = json!(i.to_string());
        pod["metadata"]["labels"][INDEX] = json!(i.to_string());
        pod["spec"]["hostname"] = json!(format!("{name}-{i}"));
    }
    pod
}

/// Indexes as upstream writes `completedIndexes`: `1,3-5,7`.
fn ranges(indexes: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().unwrap_or(last);
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

async fn delete_pods(api: &dyn Api, tenant: &str, job: &Value, pods: &[&Value]) -> Result<()> {
    for pod in pods {
        crate::delete_pod(api, tenant, COMPONENT, job, pod).await?;
    }
    Ok(())
}

/// Sets a Job condition to True (kept as it is if it already was); whether it is new.
fn set(
    conditions: &mut Vec<Value>,
    kind: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    if conditions
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
    {
        return false;
    }
    conditions.retain(|c| c["type"] != kind);
    let at = pods::stamp(now);
    conditions.push(json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": at, "lastTransitionTime": at,
    }));
    true
}

/// A finished Job goes `ttlSecondsAfterFinished` after it finished.
async fn expire(api: &dyn Api, tenant: &str, job: &Value, now: jiff::Timestamp) -> Result<Requeue> {
    let Some(ttl) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_i64)
    else {
        return Ok(None);
    };
    let finished = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .filter_map(|c| c["lastTransitionTime"].as_str())
        .next();
    let left = ttl - seconds_since(finished, now);
    if left > 0 {
        return Ok(requeue_in(left));
    }
    crate::delete_object(api, tenant, &RESOURCE, job).await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let set = |v: &[i64]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(ranges(&set(&[])), "");
        assert_eq!(ranges(&set(&[0, 1, 2, 4, 6, 7])), "0-2,4,6-7");
        assert_eq!(ranges(&set(&[3])), "3");
    }

    #[test]
    fn backoff_doubles_up_to_six_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(10), Duration::from_secs(360));
    }

    #[test]
    fn indexed_pods_know_their_index() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u"},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
        let pod = job_pod(&job, Some(2));
        assert_eq!(index_of(&pod), Some(2));
        assert_eq!(pod["spec"]["hostname"], "j-2");
        assert_eq!(pod["metadata"]["generateName"], "j-2-");
        assert!(pods::controlled_by(&pod, &job));
    }
}
