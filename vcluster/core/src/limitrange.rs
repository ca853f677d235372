//! LimitRange, as upstream's LimitRanger admission applies it to a pod: `Container` limits
//! fill in each container's missing limits (`default`) and requests (`defaultRequest`, else
//! the default limit), then `min` and `max` bound each container's requests and limits,
//! and `Pod` limits bound the pod's sums. Violations read as upstream's.

use serde_json::{Value, json};

use crate::quantity::{self, milli_of, pod_total};

fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    ranges
        .iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(move |l| l["type"] == kind)
}

fn show(resource: &str, milli: i128) -> String {
    quantity::format(milli, resource != "cpu")
}

/// Fills in the defaults of `ranges` (LimitRange objects of the pod's namespace) and
/// returns why the pod breaks their bounds; empty if it does not.
pub fn apply(ranges: &[Value], pod: &mut Value) -> Vec<String> {
    for item in items(ranges, "Container") {
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod["spec"][list].as_array_mut() else {
                continue;
            };
            for c in containers {
                fill(c, "limits", item.get("default"));
                // A resource with a default limit and no default request gets the limit
                // as its request (upstream's LimitRange defaulting).
                fill(c, "requests", item.get("defaultRequest"));
                fill(c, "requests", item.get("default"));
            }
        }
    }
    let mut out = Vec::new();
    for item in items(ranges, "Container") {
        for c in ["initContainers", "containers"]
            .iter()
            .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        {
            for (field, word) in [("requests", "request"), ("limits", "limit")] {
                bound(item, &c["resources"][field], "Container", word, &mut out);
            }
        }
    }
    for item in items(ranges, "Pod") {
        for (field, word) in [("requests", "request"), ("limits", "limit")] {
            let resources: Vec<&String> = item["max"]
                .as_object()
                .into_iter()
                .chain(item["min"].as_object())
                .flat_map(|m| m.keys())
                .collect();
            let totals: serde_json::Map<String, Value> = resources
                .into_iter()
                .map(|r| (r.clone(), json!(show(r, pod_total(&pod["spec"], field, r)))))
                .collect();
            bound(item, &Value::Object(totals), "Pod", word, &mut out);
        }
    }
    out
}

/// Sets each resource of `defaults` the container's `field` lacks.
fn fill(container: &mut Value, field: &str, defaults: Option<&Value>) {
    let Some(defaults) = defaults.and_then(Value::as_object) else {
        return;
    };
    for (resource, value) in defaults {
        let current = &mut container["resources"][field];
        if current.get(resource).is_none() {
            current[resource] = value.clone();
        }
    }
}

/// Checks the quantities in `values` against `item`'s `min` (requests only) and `max`.
fn bound(item: &Value, values: &Value, scope: &str, word: &str, out: &mut Vec<String>) {
    for (bound_name, is_max) in [("max", true), ("min", false)] {
        for (resource, limit) in item[bound_name].as_object().into_iter().flatten() {
            let Some(limit) = milli_of(limit) else {
                continue;
            };
            let value = values.get(resource).and_then(milli_of);
            let breaks = match (value, is_max) {
                (Some(v), true) => v > limit,
                (Some(v), false) => word == "request" && v < limit,
                (None, true) => word == "limit",
                (None, false) => false,
            };
            if breaks {
                let bound_word = if is_max { "maximum" } else { "minimum" };
                let allowed = show(resource, limit);
                out.push(match value {
                    Some(v) => format!(
                        "{bound_word} {resource} usage per {scope} is {allowed}, but {word} is {}",
                        show(resource, v)
                    ),
                    None => format!(
                        "{bound_word} {resource} usage per {scope} is {allowed}.  No {word} is specified"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Value {
        json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m"},
            "max": {"cpu": "1"},
            "min": {"cpu": "50m"}}]}})
    }

    #[test]
    fn defaults_fill_in_what_containers_lack() {
        let mut pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "800m"}}}]}});
        assert!(apply(&[range()], &mut pod).is_empty());
        let a = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(
            (a["limits"]["cpu"].as_str(), a["requests"]["cpu"].as_str()),
            (Some("500m"), Some("100m"))
        );
        assert_eq!(
            a["requests"]["memory"], "128Mi",
            "the default limit is the default request"
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "800m"
        );
    }

    #[test]
    fn bounds_are_kept() {
        let mut big = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "10m"}}}]}});
        let found = apply(&[range()], &mut big);
        assert_eq!(
            found,
            [
                "minimum cpu usage per Container is 50m, but request is 10m",
                "maximum cpu usage per Container is 1, but limit is 2",
            ]
        );
    }
}
