//! Graceful deletion: how long an object lives on, marked, after a DELETE, as
//! kube-apiserver's `rest.BeforeDelete` and the pod strategy's `CheckGracefulDelete`
//! decide it. Pods are the one built-in kind deleted gracefully: a running pod is marked
//! (`deletionTimestamp` in the future, `deletionGracePeriodSeconds`) so that its kubelet
//! can stop its containers, and the kubelet then deletes it with a grace of 0.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// What a DELETE does to an object, before finalizers are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted now (or, held by finalizers, marked with a grace of 0).
    Now,
    /// Marked with this `deletionTimestamp` and `deletionGracePeriodSeconds`; a grace of 0
    /// (a pending deletion shortened to nothing) deletes at once unless finalizers hold it.
    Mark { timestamp: String, grace: i64 },
    /// A graceful deletion is already under way, and not shortened: nothing changes.
    Pending,
}

/// What deleting `pod` with `requested` seconds of grace (`gracePeriodSeconds`, if the
/// client gave one) does at `now`. Negative requests count as 1 s, as upstream's do.
///
/// A pod not yet bound to a node, or already Succeeded or Failed, has no kubelet to wait
/// for: it goes at once. Otherwise the grace is the request, else the pod's
/// `terminationGracePeriodSeconds`. A pod already being deleted may only have its grace
/// shortened.
pub fn of_pod(pod: &Value, requested: Option<i64>, now: Timestamp) -> Deletion {
    let requested = requested.map(|g| if g < 0 { 1 } else { g });
    let metadata = &pod["metadata"];
    if !metadata["deletionTimestamp"].is_null() {
        let Some(pending) = metadata["deletionGracePeriodSeconds"]
            .as_i64()
            .filter(|g| *g != 0)
        else {
            // Marked with no grace left (finalizers hold it): it may go now.
            return Deletion::Now;
        };
        return match requested {
            Some(grace) if grace < pending => {
                let marked = metadata["deletionTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .unwrap_or(now);
                let at =
                    marked - SignedDuration::from_secs(pending) + SignedDuration::from_secs(grace);
                Deletion::Mark {
                    timestamp: timestamp(at),
                    grace,
                }
            }
            _ => Deletion::Pending,
        };
    }
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let grace = requested
        .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds")?.as_i64())
        .unwrap_or(0);
    if !bound || finished || grace == 0 {
        return Deletion::Now;
    }
    Deletion::Mark {
        timestamp: timestamp(now + SignedDuration::from_secs(grace)),
        grace,
    }
}

/// A metav1.Time: RFC 3339 in seconds, UTC.
fn timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn pod(node: Option<&str>, phase: &str, termination: Option<i64>) -> Value {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": phase}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        if let Some(t) = termination {
            pod["spec"]["terminationGracePeriodSeconds"] = json!(t);
        }
        pod
    }

    fn marked(mut pod: Value, at: &str, grace: i64) -> Value {
        pod["metadata"]["deletionTimestamp"] = json!(at);
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        pod
    }

    fn mark(at: &str, grace: i64) -> Deletion {
        Deletion::Mark {
            timestamp: at.into(),
            grace,
        }
    }

    #[test]
    fn pods_are_deleted_as_upstream_deletes_them() {
        let now: Timestamp = NOW.parse().expect("time");
        let running = pod(Some("n"), "Running", Some(30));
        let cases = [
            (
                "bound and running: its own grace",
                running.clone(),
                None,
                mark("2026-01-01T00:00:30Z", 30),
            ),
            (
                "the request wins",
                running.clone(),
                Some(5),
                mark("2026-01-01T00:00:05Z", 5),
            ),
            (
                "negative counts as 1 s",
                running.clone(),
                Some(-3),
                mark("2026-01-01T00:00:01Z", 1),
            ),
            (
                "zero: at once (--force)",
                running.clone(),
                Some(0),
                Deletion::Now,
            ),
            (
                "no grace of its own",
                pod(Some("n"), "Running", None),
                None,
                Deletion::Now,
            ),
            (
                "not bound",
                pod(None, "Pending", Some(30)),
                Some(10),
                Deletion::Now,
            ),
            (
                "bound to an empty name",
                pod(Some(""), "Pending", Some(30)),
                None,
                Deletion::Now,
            ),
            (
                "succeeded",
                pod(Some("n"), "Succeeded", Some(30)),
                None,
                Deletion::Now,
            ),
            (
                "failed",
                pod(Some("n"), "Failed", Some(30)),
                Some(9),
                Deletion::Now,
            ),
            (
                "pending: a longer grace changes nothing",
                marked(running.clone(), "2026-01-01T00:00:30Z", 30),
                Some(60),
                Deletion::Pending,
            ),
            (
                "pending: no request changes nothing",
                marked(running.clone(), "2026-01-01T00:00:30Z", 30),
                None,
                Deletion::Pending,
            ),
            (
                "pending: shortened from when it was marked",
                marked(running.clone(), "2026-01-01T00:00:20Z", 30),
                Some(10),
                mark("2026-01-01T00:00:00Z", 10),
            ),
            (
                "pending: shortened to nothing (the kubelet's last word)",
                marked(running.clone(), "2026-01-01T00:00:30Z", 30),
                Some(0),
                mark("2026-01-01T00:00:00Z", 0),
            ),
            (
                "marked with no grace (finalizers hold it)",
                marked(running.clone(), NOW, 0),
                Some(30),
                Deletion::Now,
            ),
        ];
        for (what, pod, requested, wanted) in cases {
            assert_eq!(of_pod(&pod, requested, now), wanted, "{what}");
        }
    }
}
