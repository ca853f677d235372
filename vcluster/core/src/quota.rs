//! ResourceQuota accounting, as upstream's evaluators count: which objects a quota's
//! resource name counts and how much each counts (in thousandths, as quantities are), for
//! the quota admission check and the quota controller's `status.used`.

use serde_json::Value;

use crate::quantity::{self, pod_total};

/// The (group, plural) of the objects a quota resource name counts.
pub fn counted(resource: &str) -> Option<(&str, &str)> {
    Some(match resource {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => ("", "pods"),
        r if r.starts_with("requests.") && r != "requests.storage" => ("", "pods"),
        r if r.starts_with("limits.") => ("", "pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => ("", "services"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => ("", resource),
        "persistentvolumeclaims" | "requests.storage" => ("", "persistentvolumeclaims"),
        r => {
            let name = r.strip_prefix("count/")?;
            match name.split_once('.') {
                Some((plural, group)) => (group, plural),
                None => ("", name),
            }
        }
    })
}

/// Whether a quantity of this resource reads best in binary units (memory, storage).
pub fn is_binary(resource: &str) -> bool {
    resource.contains("memory") || resource.contains("storage")
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// How much `object` counts towards `resource`, in thousandths.
pub fn amount(resource: &str, object: &Value) -> i128 {
    const ONE: i128 = 1000;
    let pods = counted(resource) == Some(("", "pods"));
    if pods && terminal(object) {
        return 0;
    }
    let spec = &object["spec"];
    match resource {
        "cpu" | "memory" | "ephemeral-storage" => pod_total(spec, "requests", resource),
        r if pods && r.starts_with("requests.") => {
            pod_total(spec, "requests", &r["requests.".len()..])
        }
        r if pods && r.starts_with("limits.") => pod_total(spec, "limits", &r["limits.".len()..]),
        "services.nodeports" => {
            let external = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
            let ports = spec["ports"].as_array().map_or(0, Vec::len);
            if external {
                ONE * i128::try_from(ports).unwrap_or(0)
            } else {
                0
            }
        }
        "services.loadbalancers" => {
            if spec["type"] == "LoadBalancer" {
                ONE
            } else {
                0
            }
        }
        "requests.storage" => spec
            .pointer("/resources/requests/storage")
            .and_then(quantity::milli_of)
            .unwrap_or(0),
        _ => ONE,
    }
}

/// What `objects` come to for `resource`.
pub fn usage<'a>(resource: &str, objects: impl IntoIterator<Item = &'a Value>) -> i128 {
    objects.into_iter().map(|o| amount(resource, o)).sum()
}

/// A quantity of `resource` as a quota shows it.
pub fn show(resource: &str, milli: i128) -> String {
    quantity::format(milli, is_binary(resource))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_count_their_objects() {
        assert_eq!(counted("pods"), Some(("", "pods")));
        assert_eq!(counted("requests.cpu"), Some(("", "pods")));
        assert_eq!(
            counted("requests.storage"),
            Some(("", "persistentvolumeclaims"))
        );
        assert_eq!(
            counted("count/deployments.apps"),
            Some(("apps", "deployments"))
        );
        assert_eq!(counted("count/configmaps"), Some(("", "configmaps")));
        assert_eq!(counted("bogus"), None);
    }

    #[test]
    fn pods_count_until_they_finish() {
        let pod = |phase: &str| {
            json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "200m"}}}]},
                   "status": {"phase": phase}})
        };
        let pods = [pod("Running"), pod("Pending"), pod("Succeeded")];
        assert_eq!(usage("pods", &pods), 2000);
        assert_eq!(show("requests.cpu", usage("requests.cpu", &pods)), "400m");
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}});
        assert_eq!(amount("services.nodeports", &svc), 2000);
        assert_eq!(amount("services.loadbalancers", &svc), 0);
    }
}
