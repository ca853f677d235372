//! Resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as numbers, and what pods ask
//! for: shared by quota admission, the quota controller and the node simulator.

use serde_json::Value;

/// A quantity in thousandths of its unit (millicores for CPU, millibytes for memory), so
/// that fractions of either are exact; `None` if it does not parse.
pub fn milli(quantity: &str) -> Option<i128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() {
        return None;
    }
    let exponent = match suffix.strip_prefix(['e', 'E']) {
        Some(e) => e.parse::<i32>().ok()?,
        None => 0,
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
    let value: f64 = number.parse().ok()?;
    // Rounded up, as upstream rounds requests.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "quantities are far below i128's range"
    )]
    Some((value * multiplier * 1000.0).ceil() as i128)
}

/// A quantity field (a string or a number) in thousandths.
pub fn milli_of(value: &Value) -> Option<i128> {
    match value {
        Value::String(s) => milli(s),
        Value::Number(n) => milli(&n.to_string()),
        _ => None,
    }
}

/// Writes thousandths back as a quantity: whole units plainly, binary multiples of memory
/// with their suffix, the rest in `m`.
pub fn format(milli: i128, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if binary && units != 0 {
        for (suffix, size) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
    }
    units.to_string()
}

/// What a pod spec asks for of `resource` (`cpu`, `memory`, ...) in its `field`
/// (`requests` or `limits`), in thousandths: its containers' sum, or its largest init
/// container's if larger (init containers run first), as upstream's scheduler and quota
/// count it. A limit with no request is the request too (upstream's defaulting).
pub fn pod_total(spec: &Value, field: &str, resource: &str) -> i128 {
    let of = |list: &str| -> Vec<i128> {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let get = |f: &str| {
                    c.pointer(&format!("/resources/{f}/{resource}"))
                        .and_then(milli_of)
                };
                match field {
                    "requests" => get("requests").or_else(|| get("limits")),
                    _ => get(field),
                }
                .unwrap_or(0)
            })
            .collect()
    };
    let main: i128 = of("containers").into_iter().sum();
    let init = of("initContainers").into_iter().max().unwrap_or(0);
    main.max(init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(milli_of(&json!(3)), Some(3000));
    }

    #[test]
    fn quantities_print() {
        assert_eq!(format(1500, false), "1500m");
        assert_eq!(format(3000, false), "3");
        assert_eq!(format(64 * 1024 * 1024 * 1000, true), "64Mi");
        assert_eq!(format(0, true), "0");
    }

    #[test]
    fn pods_ask_for_their_containers_sum() {
        let spec = json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "1"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        });
        assert_eq!(
            pod_total(&spec, "requests", "cpu"),
            2000,
            "the init container is larger"
        );
        assert_eq!(
            pod_total(&spec, "requests", "memory"),
            64 * 1024 * 1024 * 1000
        );
        assert_eq!(pod_total(&spec, "limits", "cpu"), 1000);
    }
}
