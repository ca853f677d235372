//! The CronJob controller, after upstream's: at each time the schedule names (in
//! `timeZone`, UTC by default) a Job is made from `jobTemplate`, named
//! `<cronjob>-<minutes since the epoch>` (so one per scheduled time, whatever happens); a
//! missed time is caught up only if it is the latest one and within
//! `startingDeadlineSeconds`; `concurrencyPolicy` Forbid skips a time while a Job runs and
//! Replace deletes the running one; `suspend` stops new Jobs; finished Jobs beyond the
//! history limits are deleted. The status lists the active Jobs and the last schedule and
//! success times.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::{Value, json};
use vcluster_core::object::{is_deleting, meta_str};
use vcluster_core::status::Reason;

use crate::pods::{self, int};
use crate::queue::{Key, Queue};
use crate::{Api, Change, EventType, Requeue, Resource, Result, job};

/// Who this controller's events come from, as upstream names it.
const COMPONENT: &str = "cronjob-controller";

pub(crate) static RESOURCE: LazyLock<Resource> =
    LazyLock::new(|| Resource::builtin("batch", "cronjobs"));

const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub(crate) fn watch(change: &Change, queue: &Queue) {
    crate::queue_for(change, queue, &RESOURCE, &job::RESOURCE, "CronJob");
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    sync(&*api, &key).await
}

/// A Job's finished condition, if it has one: ("Complete" | "Failed", when).
fn finished(job: &Value) -> Option<(&str, &str)> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default(),
                c["lastTransitionTime"].as_str().unwrap_or_default(),
            )
        })
}

/// The schedule in the CronJob's zone, or why it cannot be read.
fn schedule(cj: &Value) -> std::result::Result<(Cron, TimeZone), String> {
    let spec = cj["spec"]["schedule"].as_str().unwrap_or_default();
    // `TZ=<zone> <schedule>` is upstream's older spelling of `timeZone`.
    let (inline, spec) = match spec
        .strip_prefix("TZ=")
        .or_else(|| spec.strip_prefix("CRON_TZ="))
    {
        Some(rest) => {
            let (zone, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            (Some(zone), spec)
        }
        None => (None, spec),
    };
    let zone = match cj["spec"]["timeZone"].as_str().or(inline) {
        Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name}: {e}"))?,
        None => TimeZone::UTC,
    };
    let cron = spec
        .parse::<Cron>()
        .map_err(|e| format!("unparseable schedule {spec:?}: {e}"))?;
    Ok((cron, zone))
}

/// The latest scheduled time after `after` and not after `now`, if any.
fn latest_due(cron: &Cron, zone: &TimeZone, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let now = now.to_zoned(zone.clone());
    let last = cron.find_previous_occurrence(&now, true).ok()?;
    (last.timestamp() > after).then(|| last.timestamp())
}

fn next_due(cron: &Cron, zone: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let now: Zoned = now.to_zoned(zone.clone());
    cron.find_next_occurrence(&now, false)
        .ok()
        .map(|t| t.timestamp())
}

fn time_at(object: &Value, pointer: &str) -> Option<Timestamp> {
    object.pointer(pointer)?.as_str()?.parse().ok()
}

async fn sync(api: &dyn Api, key: &Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let Some(cj) = api.get(tenant, &RESOURCE, namespace, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&cj) {
        return Ok(None);
    }
    let mut jobs: Vec<Value> = api
        .list(tenant, &job::RESOURCE, namespace)
        .await?
        .into_iter()
        .filter(|j| pods::controlled_by(j, &cj) && !is_deleting(j))
        .collect();
    jobs.sort_by(|a, b| {
        let at = |j: &Value| {
            meta_str(j, "creationTimestamp")
                .unwrap_or_default()
                .to_owned()
        };
        at(a).cmp(&at(b))
    });
    let now = pods::now();
    let mut status = cj["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    if let Some(success) = jobs
        .iter()
        .filter(|j| finished(j).is_some_and(|(kind, _)| kind == "Complete"))
        .filter_map(|j| j.pointer("/status/completionTime").cloned())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .max()
    {
        status["lastSuccessfulTime"] = json!(success);
    }
    prune_history(api, tenant, &cj, &mut jobs).await?;
    let mut active: Vec<Value> = jobs
        .iter()
        .filter(|j| finished(j).is_none())
        .cloned()
        .collect();

    let (cron, zone) = match schedule(&cj) {
        Ok(parsed) => parsed,
        Err(why) => {
            tracing::debug!(tenant, cronjob = %key.name, %why, "cronjob schedule unusable");
            return write_status(api, tenant, &cj, status, &active)
                .await
                .map(|()| None);
        }
    };
    let suspended = cj.pointer("/spec/suspend") == Some(&json!(true));
    let mut earliest = time_at(&cj, "/status/lastScheduleTime")
        .or_else(|| time_at(&cj, "/metadata/creationTimestamp"))
        .unwrap_or(now);
    let deadline = cj
        .pointer("/spec/startingDeadlineSeconds")
        .and_then(Value::as_i64);
    if let Some(d) = deadline
        && let Ok(floor) = now.checked_sub(jiff::SignedDuration::from_secs(d))
    {
        earliest = earliest.max(floor);
    }
    if !suspended && let Some(due) = latest_due(&cron, &zone, earliest, now) {
        let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            // Skipped: this time is tried again while it is within the deadline.
        } else {
            if policy == "Replace" {
                for job in active.drain(..) {
                    crate::delete_object(api, tenant, &job::RESOURCE, &job).await?;
                }
            }
            match api
                .create(tenant, &job::RESOURCE, namespace, job_for(&cj, due))
                .await
            {
                Ok(created) => {
                    let name = meta_str(&created, "name").unwrap_or_default();
                    let message = format!("Created job {name}");
                    let events = api.recorder();
                    events.record(
                        tenant,
                        COMPONENT,
                        &cj,
                        EventType::Normal,
                        "SuccessfulCreate",
                        message,
                    );
                    active.push(created);
                }
                Err(e) if e.is(Reason::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
            status["lastScheduleTime"] = json!(pods::stamp(due));
        }
    }
    write_status(api, tenant, &cj, status, &active).await?;
    // Look again at the next scheduled time.
    Ok(next_due(&cron, &zone, now).map(|next| {
        let wait = next.duration_since(now).unsigned_abs();
        wait + Duration::from_millis(100)
    }))
}

/// The Job of the time `due`.
fn job_for(cj: &Value, due: Timestamp) -> Value {
    let template = &cj["spec"]["jobTemplate"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    let name = meta_str(cj, "name").unwrap_or_default();
    metadata["name"] = json!(format!("{name}-{}", due.as_second() / 60));
    metadata["annotations"][SCHEDULED] = json!(due.to_string());
    metadata["ownerReferences"] = json!([pods::controller_reference(cj)]);
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": template["spec"]})
}

async fn write_status(
    api: &dyn Api,
    tenant: &str,
    cj: &Value,
    mut status: Value,
    active: &[Value],
) -> Result<()> {
    let refs: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "name": meta_str(j, "name"), "namespace": meta_str(j, "namespace"),
                "uid": meta_str(j, "uid"), "resourceVersion": meta_str(j, "resourceVersion"),
            })
        })
        .collect();
    match status.as_object_mut() {
        Some(map) if refs.is_empty() => {
            map.remove("active");
        }
        Some(map) => {
            map.insert("active".into(), Value::Array(refs));
        }
        None => {}
    }
    crate::write_status(api, tenant, &RESOURCE, cj, status).await
}

/// Deletes the oldest finished Jobs beyond `successfulJobsHistoryLimit` (3) and
/// `failedJobsHistoryLimit` (1).
async fn prune_history(
    api: &dyn Api,
    tenant: &str,
    cj: &Value,
    jobs: &mut Vec<Value>,
) -> Result<()> {
    for (kind, field, default) in [
        ("Complete", "/spec/successfulJobsHistoryLimit", 3),
        ("Failed", "/spec/failedJobsHistoryLimit", 1),
    ] {
        let limit = usize::try_from(int(cj, field, default)).unwrap_or(0);
        let of_kind: Vec<&Value> = jobs
            .iter()
            .filter(|j| finished(j).is_some_and(|(k, _)| k == kind))
            .collect();
        let excess = of_kind.len().saturating_sub(limit);
        let mut gone = Vec::new();
        for job in of_kind.into_iter().take(excess) {
            crate::delete_object(api, tenant, &job::RESOURCE, job).await?;
            let name = meta_str(job, "name").unwrap_or_default();
            let message = format!("Deleted job {name}");
            let events = api.recorder();
            events.record(
                tenant,
                COMPONENT,
                cj,
                EventType::Normal,
                "SuccessfulDelete",
                message,
            );
            gone.push(meta_str(job, "uid").unwrap_or_default().to_owned());
        }
        jobs.retain(|j| {
            !gone
                .iter()
                .any(|uid| meta_str(j, "uid") == Some(uid.as_str()))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn only_the_latest_missed_time_is_due() {
        let cj = json!({"spec": {"schedule": "*/5 * * * *"}});
        let (cron, zone) = schedule(&cj).expect("schedule");
        let due = latest_due(
            &cron,
            &zone,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:17:30Z"),
        );
        assert_eq!(due, Some(at("2026-01-01T00:15:00Z")));
        assert_eq!(
            latest_due(
                &cron,
                &zone,
                at("2026-01-01T00:15:00Z"),
                at("2026-01-01T00:17:30Z")
            ),
            None
        );
        assert_eq!(
            next_due(&cron, &zone, at("2026-01-01T00:17:30Z")),
            Some(at("2026-01-01T00:20:00Z"))
        );
    }

    #[test]
    fn schedules_follow_their_time_zone() {
        let cj = json!({"spec": {"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}});
        let (cron, zone) = schedule(&cj).expect("schedule");
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(
            next_due(&cron, &zone, at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T08:00:00Z"))
        );
        assert!(schedule(&json!({"spec": {"schedule": "not a schedule"}})).is_err());
        assert!(schedule(&json!({"spec": {"schedule": "@hourly"}})).is_ok());
    }

    #[test]
    fn jobs_are_named_by_their_minute() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "uid": "u"},
            "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": {}}}}});
        let job = job_for(&cj, at("2026-01-01T00:05:00Z"));
        assert_eq!(
            job["metadata"]["name"],
            format!("tick-{}", at("2026-01-01T00:05:00Z").as_second() / 60)
        );
        assert_eq!(job["metadata"]["labels"]["a"], "b");
        assert!(pods::controlled_by(&job, &cj));
    }
}
