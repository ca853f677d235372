//! Resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as numbers, and a pod's
//! requests and QoS class.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity in thousandths of its unit (millicores for CPU, millibytes for memory),
/// so that fractions of either are exact; `None` if it does not parse.
pub(crate) fn milli(quantity: &str) -> Option<i128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (mantissa, exponent) = match suffix.strip_prefix(['e', 'E']) {
        Some(e) => (number, e.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let multiplier: f64 = match suffix {
        _ if exponent != 0 => 10f64.powi(exponent),
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let value: f64 = mantissa.parse().ok()?;
    // Rounded up, as upstream rounds requests.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "quantities are far below i128's range"
    )]
    Some((value * multiplier * 1000.0).ceil() as i128)
}

/// What a pod asks for: (CPU, memory), in thousandths, over its containers (init
/// containers run first, so the larger of the two counts, as upstream's scheduler has it).
pub(crate) fn requests(pod: &Pod) -> (i128, i128) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let of = |containers: &[k8s_openapi::api::core::v1::Container], resource: &str| -> Vec<i128> {
        containers
            .iter()
            .map(|c| {
                let resources = c.resources.as_ref();
                let get = |m: Option<&std::collections::BTreeMap<String, Quantity>>| {
                    m.and_then(|m| m.get(resource)).and_then(|q| milli(&q.0))
                };
                // A limit with no request is the request too (upstream's defaulting).
                get(resources.and_then(|r| r.requests.as_ref()))
                    .or_else(|| get(resources.and_then(|r| r.limits.as_ref())))
                    .unwrap_or(0)
            })
            .collect()
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let total = |resource: &str| {
        let main: i128 = of(&spec.containers, resource).into_iter().sum();
        let init = of(init, resource).into_iter().max().unwrap_or(0);
        main.max(init)
    };
    (total("cpu"), total("memory"))
}

/// The pod's QoS class: Guaranteed (every container's requests equal its limits for CPU and
/// memory), BestEffort (none has any), else Burstable.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let resources = c.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        for resource in ["cpu", "memory"] {
            let limit = limits
                .and_then(|l| l.get(resource))
                .and_then(|q| milli(&q.0));
            let request = requests
                .and_then(|r| r.get(resource))
                .and_then(|q| milli(&q.0))
                .or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("1Ki"), Some(1_024_000));
        assert_eq!(milli("1G"), Some(1_000_000_000_000));
        assert_eq!(milli("2e3"), Some(2_000_000));
        assert_eq!(milli("12x"), None);
        assert_eq!(milli(""), None);
    }

    #[test]
    fn requests_and_qos() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "1"}}},
            ]}
        }))
        .expect("pod");
        assert_eq!(requests(&pod), (1250, 64 * 1024 * 1024 * 1000));
        assert_eq!(qos_class(&pod), "Burstable");
        let best: Pod =
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "a"}]}}))
                .expect("pod");
        assert_eq!(qos_class(&best), "BestEffort");
        let guaranteed: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
        ]}}))
        .expect("pod");
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
    }
}
