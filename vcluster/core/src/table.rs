//! Server-side printing: `meta.k8s.io/v1` Tables with the columns `kubectl get` shows for
//! built-in types (kubectl prints only NAME and AGE when a server sends none), and
//! `PartialObjectMetadata` for metadata-only clients.

use serde_json::{Value, json};

use crate::registry::ResourceType;

type Cell = Box<dyn Fn(&Value, i64) -> Value>;

struct Column {
    name: String,
    ty: String,
    description: String,
    priority: i64,
    cell: Cell,
}

fn col(name: &str, ty: &str, priority: i64, cell: fn(&Value, i64) -> Value) -> Column {
    Column {
        name: name.to_owned(),
        ty: ty.to_owned(),
        description: String::new(),
        priority,
        cell: Box::new(cell),
    }
}

/// A CRD's printer column: its JSONPath's values (joined by commas), `<none>` where it
/// finds none, and the age of a `date`.
fn printer_column(c: &crate::registry::Column) -> Column {
    let path = format!("${}", c.json_path);
    let ty = c.type_.clone();
    let cell = move |o: &Value, now: i64| -> Value {
        use jsonpath_rust::JsonPath;
        let found: Vec<&Value> = o.query(&path).unwrap_or_default();
        match (found.as_slice(), ty.as_str()) {
            ([], _) => json!("<none>"),
            ([one], "date") => json!(since(one.as_str().unwrap_or_default(), now)),
            ([one], _) => (*one).clone(),
            (many, _) => json!(
                many.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    };
    Column {
        name: c.name.clone(),
        ty: c.type_.clone(),
        description: c.description.clone(),
        priority: c.priority,
        cell: Box::new(cell),
    }
}

fn s<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn n(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".into()
    } else {
        text
    })
}

fn name(o: &Value, _: i64) -> Value {
    json!(s(o, "/metadata/name"))
}

fn age(o: &Value, now: i64) -> Value {
    json!(since(s(o, "/metadata/creationTimestamp"), now))
}

/// Seconds since the Unix epoch of an RFC 3339 time, if it is one.
fn epoch(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// kubectl's short durations: `45s`, `5m10s`, `3h`, `2d4h`, `400d`.
fn since(rfc3339: &str, now: i64) -> String {
    let Some(then) = epoch(rfc3339) else {
        return "<unknown>".into();
    };
    let d = (now - then).max(0);
    // A unit and its remainder, the remainder left out when it is zero (`2m`, not `2m0s`).
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    let (day, year) = (86400, 365 * 86400);
    match d {
        d if d < 120 => format!("{d}s"),
        d if d < 600 => two(d / 60, "m", d % 60, "s"),
        d if d < 3 * 3600 => format!("{}m", d / 60),
        d if d < 8 * 3600 => two(d / 3600, "h", (d % 3600) / 60, "m"),
        d if d < 48 * 3600 => format!("{}h", d / 3600),
        d if d < 8 * day => two(d / day, "d", (d % day) / 3600, "h"),
        d if d < 2 * year => format!("{}d", d / day),
        d if d < 8 * year => two(d / year, "y", (d % year) / day, "d"),
        d => format!("{}y", d / year),
    }
}

fn count(o: &Value, pointers: &[&str]) -> i64 {
    pointers
        .iter()
        .map(|p| {
            o.pointer(p)
                .and_then(Value::as_object)
                .map_or(0, |m| m.len() as i64)
        })
        .sum()
}

fn pod_ready(o: &Value, _: i64) -> Value {
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |c| c.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value, _: i64) -> Value {
    if !s(o, "/metadata/deletionTimestamp").is_empty() {
        return json!("Terminating");
    }
    let waiting = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
        });
    // Finished containers show why they ended (`Completed`, `Error`).
    let terminated = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .and_then(|c| {
            c.iter()
                .map(|c| {
                    c.pointer("/state/terminated/reason")
                        .and_then(Value::as_str)
                })
                .collect::<Option<Vec<_>>>()
        })
        .and_then(|reasons| {
            reasons
                .into_iter()
                .find(|r| *r != "Completed")
                .or(Some("Completed"))
        });
    match (
        waiting.or(terminated),
        s(o, "/status/reason"),
        s(o, "/status/phase"),
    ) {
        (Some(reason), _, _) => json!(reason),
        (None, reason, _) if !reason.is_empty() => json!(reason),
        (None, _, phase) => json!(if phase.is_empty() { "Pending" } else { phase }),
    }
}

fn pod_restarts(o: &Value, _: i64) -> Value {
    let restarts: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |c| {
            c.iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum()
        });
    json!(restarts)
}

/// A quota's `used/hard` per resource: the `limits.` ones or the others.
/// An autoscaler's metrics as `current/target`, the current value being `<unknown>` until
/// the status has one (there is no metrics server).
fn hpa_targets(o: &Value) -> Value {
    let target = |t: &Value| match t["type"].as_str() {
        Some("Utilization") => format!("{}%", n(t, "/averageUtilization")),
        Some("AverageValue") => s(t, "/averageValue").to_owned(),
        _ => s(t, "/value").to_owned(),
    };
    let shown: Vec<String> = match o.pointer("/spec/targetCPUUtilizationPercentage") {
        Some(cpu) => vec![format!("cpu: <unknown>/{cpu}%")],
        None => o
            .pointer("/spec/metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| match m["type"].as_str().unwrap_or_default() {
                "Resource" | "ContainerResource" => {
                    let source = if m["type"] == "Resource" {
                        &m["resource"]
                    } else {
                        &m["containerResource"]
                    };
                    format!(
                        "{}: <unknown>/{}",
                        s(source, "/name"),
                        target(&source["target"])
                    )
                }
                kind => {
                    let source = &m[&kind[..1]
                        .to_lowercase()
                        .chars()
                        .chain(kind[1..].chars())
                        .collect::<String>()];
                    format!("<unknown>/{}", target(&source["target"]))
                }
            })
            .collect(),
    };
    let text = match shown.len() {
        0..=2 => shown.join(", "),
        more => format!("{} + {} more...", shown[..2].join(", "), more - 2),
    };
    or_none(text)
}

fn quota_usage(o: &Value, limits: bool) -> Value {
    let used = o.pointer("/status/used");
    let entries: Vec<String> = o
        .pointer("/status/hard")
        .or_else(|| o.pointer("/spec/hard"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(r, _)| r.starts_with("limits.") == limits)
        .map(|(r, hard)| {
            let used = used
                .and_then(|u| u.get(r))
                .and_then(Value::as_str)
                .unwrap_or("0");
            format!(
                "{r}: {used}/{}",
                hard.as_str()
                    .map_or_else(|| hard.to_string(), str::to_owned)
            )
        })
        .collect();
    json!(entries.join(", "))
}

/// At most three entries, then how many more (upstream's endpoints column).
fn first_three(entries: Vec<String>, empty: &str) -> Value {
    match entries.len() {
        0 => json!(empty),
        1..=3 => json!(entries.join(",")),
        n => json!(format!("{} + {} more...", entries[..3].join(","), n - 3)),
    }
}

fn endpoints(o: &Value, _: i64) -> Value {
    let mut entries = Vec::new();
    for subset in o["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or_default();
            if ports.is_empty() {
                entries.push(ip.to_owned());
            }
            entries.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    first_three(entries, "<none>")
}

fn slice_ports(o: &Value, _: i64) -> Value {
    let ports: Vec<String> = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
        .collect();
    or_unset(ports.join(","))
}

fn or_unset(text: String) -> Value {
    json!(if text.is_empty() {
        "<unset>".to_owned()
    } else {
        text
    })
}

fn slice_endpoints(o: &Value, _: i64) -> Value {
    let addresses: Vec<String> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    first_three(addresses, "<unset>")
}

fn service_ports(o: &Value, _: i64) -> Value {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64().filter(|n| *n > 0) {
                        Some(node) => format!("{}:{node}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

fn node_status(o: &Value, _: i64) -> Value {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut status = match ready {
        Some(true) => "Ready".to_owned(),
        Some(false) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn job_completions(o: &Value, _: i64) -> Value {
    let wanted = o
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!(format!("{}/{wanted}", n(o, "/status/succeeded")))
}

/// When an event was last (or first) seen: its timestamp, else its `eventTime`.
fn seen(o: &Value, pointer: &str, now: i64) -> Value {
    let at = Some(s(o, pointer))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| s(o, "/eventTime"));
    json!(since(at, now))
}

/// A core/v1 Event's columns, as upstream prints them (`kubectl get events`): no name first
/// and no age, the name among the wide columns.
fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", "string", 0, |o, now| {
            match o
                .pointer("/series/lastObservedTime")
                .and_then(Value::as_str)
            {
                Some(at) => json!(since(at, now)),
                None => seen(o, "/lastTimestamp", now),
            }
        }),
        col("Type", "string", 0, |o, _| json!(s(o, "/type"))),
        col("Reason", "string", 0, |o, _| json!(s(o, "/reason"))),
        col("Object", "string", 0, |o, _| {
            json!(format!(
                "{}/{}",
                s(o, "/involvedObject/kind").to_lowercase(),
                s(o, "/involvedObject/name")
            ))
        }),
        col("Subobject", "string", 1, |o, _| {
            json!(s(o, "/involvedObject/fieldPath"))
        }),
        col("Source", "string", 1, |o, _| {
            let component = Some(s(o, "/source/component"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| s(o, "/reportingComponent"));
            let host = Some(s(o, "/source/host"))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| s(o, "/reportingInstance"));
            json!(if host.is_empty() {
                component.to_owned()
            } else {
                format!("{component}, {host}")
            })
        }),
        col("Message", "string", 0, |o, _| {
            json!(s(o, "/message").trim())
        }),
        col("First Seen", "string", 1, |o, now| {
            seen(o, "/firstTimestamp", now)
        }),
        col("Count", "string", 1, |o, _| {
            let count = o
                .pointer("/series/count")
                .or_else(|| o.get("count"))
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1);
            json!(count.to_string())
        }),
        col("Name", "string", 1, name),
    ]
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    if rt.gk() == ("", "Event") {
        return event_columns();
    }
    let mut out = vec![col("Name", "string", 0, name)];
    if let Some(custom) = rt.custom.as_ref().filter(|c| !c.columns.is_empty()) {
        // A CRD that names its columns gets those, after the name (upstream adds no age).
        out.extend(custom.columns.iter().map(printer_column));
        return out;
    }
    out.extend(match rt.gk() {
        ("", "Namespace") => vec![col("Status", "string", 0, |o, _| {
            json!(s(o, "/status/phase"))
        })],
        ("apiregistration.k8s.io", "APIService") => vec![
            col("Service", "string", 0, |o, _| {
                match o.pointer("/spec/service") {
                    Some(svc) if svc.is_object() => json!(format!(
                        "{}/{}",
                        svc["namespace"].as_str().unwrap_or_default(),
                        svc["name"].as_str().unwrap_or_default()
                    )),
                    _ => json!("Local"),
                }
            }),
            col("Available", "string", 0, |o, _| {
                let available = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "Available"));
                json!(match available {
                    Some(c) if c["status"] == "True" => "True".to_owned(),
                    Some(c) => format!(
                        "{} ({})",
                        c["status"].as_str().unwrap_or("Unknown"),
                        c["reason"].as_str().unwrap_or_default()
                    ),
                    None => "Unknown".to_owned(),
                })
            }),
        ],
        ("", "Pod") => vec![
            col("Ready", "string", 0, pod_ready),
            col("Status", "string", 0, pod_status),
            col("Restarts", "integer", 0, pod_restarts),
        ],
        ("", "Service") => vec![
            col("Type", "string", 0, |o, _| json!(s(o, "/spec/type"))),
            col("Cluster-IP", "string", 0, |o, _| {
                or_none(s(o, "/spec/clusterIP").to_owned())
            }),
            col("External-IP", "string", 0, |o, _| {
                let ips = o.pointer("/spec/externalIPs").and_then(Value::as_array);
                or_none(
                    ips.map(|i| {
                        i.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
                )
            }),
            col("Port(s)", "string", 0, service_ports),
        ],
        ("", "Endpoints") => vec![col("Endpoints", "string", 0, endpoints)],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            col("AddressType", "string", 0, |o, _| {
                json!(s(o, "/addressType"))
            }),
            col("Ports", "string", 0, slice_ports),
            col("Endpoints", "string", 0, slice_endpoints),
        ],
        ("", "ResourceQuota") => vec![
            col("Request", "string", 0, |o, _| quota_usage(o, false)),
            col("Limit", "string", 0, |o, _| quota_usage(o, true)),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            col("Reference", "string", 0, |o, _| {
                json!(format!(
                    "{}/{}",
                    s(o, "/spec/scaleTargetRef/kind"),
                    s(o, "/spec/scaleTargetRef/name")
                ))
            }),
            col("Targets", "string", 0, |o, _| hpa_targets(o)),
            col("MinPods", "string", 0, |o, _| {
                json!(
                    o.pointer("/spec/minReplicas")
                        .and_then(Value::as_i64)
                        .map_or("<unset>".to_owned(), |m| m.to_string())
                )
            }),
            col("MaxPods", "integer", 0, |o, _| {
                json!(n(o, "/spec/maxReplicas"))
            }),
            col("Replicas", "integer", 0, |o, _| {
                json!(n(o, "/status/currentReplicas"))
            }),
        ],
        ("", "ConfigMap") => vec![col("Data", "integer", 0, |o, _| {
            json!(count(o, &["/data", "/binaryData"]))
        })],
        ("", "Secret") => vec![
            col("Type", "string", 0, |o, _| json!(s(o, "/type"))),
            col("Data", "integer", 0, |o, _| json!(count(o, &["/data"]))),
        ],
        ("", "Node") => vec![
            col("Status", "string", 0, node_status),
            col("Roles", "string", 0, |_, _| json!("<none>")),
        ],
        ("apps", "Deployment") => vec![
            col("Ready", "string", 0, |o, _| {
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                ))
            }),
            col("Up-to-date", "integer", 0, |o, _| {
                json!(n(o, "/status/updatedReplicas"))
            }),
            col("Available", "integer", 0, |o, _| {
                json!(n(o, "/status/availableReplicas"))
            }),
        ],
        ("apps", "ReplicaSet") => vec![
            col("Desired", "integer", 0, |o, _| {
                json!(n(o, "/spec/replicas"))
            }),
            col("Current", "integer", 0, |o, _| {
                json!(n(o, "/status/replicas"))
            }),
            col("Ready", "integer", 0, |o, _| {
                json!(n(o, "/status/readyReplicas"))
            }),
        ],
        ("apps", "StatefulSet") => vec![col("Ready", "string", 0, |o, _| {
            json!(format!(
                "{}/{}",
                n(o, "/status/readyReplicas"),
                n(o, "/spec/replicas")
            ))
        })],
        ("apps", "DaemonSet") => vec![
            col("Desired", "integer", 0, |o, _| {
                json!(n(o, "/status/desiredNumberScheduled"))
            }),
            col("Current", "integer", 0, |o, _| {
                json!(n(o, "/status/currentNumberScheduled"))
            }),
            col("Ready", "integer", 0, |o, _| {
                json!(n(o, "/status/numberReady"))
            }),
            col("Up-to-date", "integer", 0, |o, _| {
                json!(n(o, "/status/updatedNumberScheduled"))
            }),
            col("Available", "integer", 0, |o, _| {
                json!(n(o, "/status/numberAvailable"))
            }),
        ],
        ("batch", "Job") => vec![col("Completions", "string", 0, job_completions)],
        ("batch", "CronJob") => vec![
            col("Schedule", "string", 0, |o, _| {
                json!(s(o, "/spec/schedule"))
            }),
            col("Suspend", "boolean", 0, |o, _| {
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
            col("Active", "integer", 0, |o, _| {
                json!(
                    o.pointer("/status/active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                )
            }),
        ],
        ("", "PersistentVolumeClaim") => vec![
            col("Status", "string", 0, |o, _| json!(s(o, "/status/phase"))),
            col("Volume", "string", 0, |o, _| {
                json!(s(o, "/spec/volumeName"))
            }),
        ],
        _ => vec![],
    });
    out.push(col("Age", "date", 0, age));
    if rt.gk() == ("", "Pod") {
        out.push(col("IP", "string", 1, |o, _| {
            or_none(s(o, "/status/podIP").to_owned())
        }));
        out.push(col("Node", "string", 1, |o, _| {
            or_none(s(o, "/spec/nodeName").to_owned())
        }));
    }
    out
}

/// The object reduced to its metadata.
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of `objects` (now: seconds since the epoch, for ages). `list_meta` is the list's
/// metadata (`resourceVersion`, `continue`).
pub fn table(rt: &ResourceType, objects: &[Value], list_meta: Value, now: i64) -> Value {
    let columns = columns(rt);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(o, now)).collect();
            json!({"cells": cells, "object": partial_metadata(o)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn a_deployment_row_has_kubectls_columns() {
        let deploy = &find("apps", "v1", "deployments").expect("deployments");
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let now = epoch("2026-01-01T00:05:10Z").expect("time");
        let t = table(deploy, &[d], json!({"resourceVersion": "9"}), now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("defs")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["web", "2/3", 3, 2, "5m10s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn a_custom_resource_row_has_its_printer_columns() {
        let mut crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ]}]},
        });
        crate::crd::accept(&mut crd, [], "t");
        let rt = &crate::crd::served_types(&crd)[0];
        let w = json!({"metadata": {"name": "w1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"size": 3}, "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let now = epoch("2026-01-01T00:01:00Z").expect("time");
        let t = table(rt, &[w], json!({}), now);
        assert_eq!(t["columnDefinitions"][2]["name"], "Ready");
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["w1", 3, "True", "<none>", "60s"])
        );
    }

    #[test]
    fn endpoints_and_finished_pods_read_like_kubectls() {
        let ep = json!({"subsets": [{"ports": [{"port": 80}], "addresses": [
            {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}]}]});
        assert_eq!(
            endpoints(&ep, 0),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        assert_eq!(endpoints(&json!({}), 0), "<none>");
        let slice = json!({"ports": [{"port": 8080}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(
            (slice_ports(&slice, 0), slice_endpoints(&slice, 0)),
            (json!("8080"), json!("10.0.0.1"))
        );
        let done = |reason: &str| {
            json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": reason}}}]}})
        };
        assert_eq!(pod_status(&done("Completed"), 0), "Completed");
        assert_eq!(pod_status(&done("Error"), 0), "Error");
        assert_eq!(
            pod_status(
                &json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}}),
                0
            ),
            "Running"
        );
    }

    #[test]
    fn quotas_read_like_kubectls() {
        let q = json!({"spec": {"hard": {"pods": "3", "limits.cpu": "2"}},
            "status": {"hard": {"pods": "3", "limits.cpu": "2"}, "used": {"pods": "1", "limits.cpu": "500m"}}});
        assert_eq!(quota_usage(&q, false), "pods: 1/3");
        assert_eq!(quota_usage(&q, true), "limits.cpu: 500m/2");
    }

    #[test]
    fn events_print_as_kubectl_get_events_shows_them() {
        let events = find("", "v1", "events").expect("built in");
        let event = json!({
            "metadata": {"name": "web-1.18a"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "Started", "message": "Started container web ", "type": "Normal",
            "source": {"component": "kubelet", "host": "sim-0"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "count": 2,
        });
        let now = epoch("2026-01-01T00:02:00Z").expect("a time");
        let t = table(&events, &[event], json!({}), now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter(|c| c["priority"] == 0)
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "60s",
                "Normal",
                "Started",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, sim-0",
                "Started container web",
                "2m",
                "2",
                "web-1.18a"
            ])
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        let t0 = "2026-01-01T00:00:00Z";
        let at = |secs: i64| since(t0, epoch(t0).expect("time") + secs);
        assert_eq!(at(5), "5s");
        assert_eq!(at(3600), "60m");
        assert_eq!(at(5 * 3600 + 120), "5h2m");
        assert_eq!(at(3 * 86400 + 7200), "3d2h");
        assert_eq!(at(400 * 86400), "400d");
        assert_eq!(at(120), "2m", "no zero remainder");
        assert_eq!(at(4 * 3600), "4h");
        assert_eq!(at(2 * 86400), "2d");
        assert_eq!(at(3 * 365 * 86400 + 5 * 86400), "3y5d");
        assert_eq!(at(9 * 365 * 86400), "9y");
    }
}
