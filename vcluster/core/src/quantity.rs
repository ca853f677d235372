//! Resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as numbers, and what pods ask
//! for: shared by quota admission, the quota controller and the node simulator.

use serde_json::Value;

/// A quantity in thousandths of its unit (millicores for CPU, millibytes for memory), so
/// that fractions of either are exact; `None` if it does not parse, or if it is too large
/// for an `i128` of nanounits (about 1.7e29 units).
///
/// It parses as upstream's `resource.Quantity` does, in integers: the value is kept to
/// nanounits, a finer remainder rounding away from zero, and is then rounded up (towards
/// positive infinity) to thousandths, as upstream rounds requests.
pub fn milli(quantity: &str) -> Option<i128> {
    const NANOS_PER_MILLI: i128 = 1_000_000;
    let nanos = nanos(quantity)?;
    Some(nanos.div_euclid(NANOS_PER_MILLI) + i128::from(nanos.rem_euclid(NANOS_PER_MILLI) != 0))
}

/// What a suffix multiplies the number by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Multiplier {
    /// A power of ten: a decimal SI suffix (`m`, `k`, `E`, ...) or an exponent (`e3`, `E-3`).
    Ten(i64),
    /// A power of two: a binary SI suffix (`Ki` ... `Ei`).
    Two(u32),
}

/// Upstream's suffixes. A suffix that is in neither table but starts with `e` or `E` is a
/// decimal exponent; so `E` alone is exa and `E3` is an exponent, and `e` alone is nothing.
fn multiplier(suffix: &str) -> Option<Multiplier> {
    let ten = |exponent| Some(Multiplier::Ten(exponent));
    let two = |exponent| Some(Multiplier::Two(exponent));
    match suffix {
        "n" => ten(-9),
        "u" => ten(-6),
        "m" => ten(-3),
        "" => ten(0),
        "k" => ten(3),
        "M" => ten(6),
        "G" => ten(9),
        "T" => ten(12),
        "P" => ten(15),
        "E" => ten(18),
        "Ki" => two(10),
        "Mi" => two(20),
        "Gi" => two(30),
        "Ti" => two(40),
        "Pi" => two(50),
        "Ei" => two(60),
        // Rust's integer parsing takes what upstream's (Go's `ParseInt`) takes here: an
        // optional sign and at least one decimal digit. Upstream then wraps the exponent to
        // 32 bits; here an exponent past that range is simply too large (or too small to
        // leave a nanounit), which no real quantity meets.
        _ => ten(suffix.strip_prefix(['e', 'E'])?.parse().ok()?),
    }
}

/// Upstream caps a binary SI quantity, silently, at 2^63-1 units ("9Ei" parses as that).
const BINARY_CAP_NANOS: i128 = ((1 << 63) - 1) * 1_000_000_000;

/// The quantity in nanounits, rounded away from zero as upstream's parser rounds it. The
/// digits are worked on as a decimal string, so a long mantissa loses nothing.
///
/// The grammar is upstream's: an optional sign, digits with an optional fraction (`1`,
/// `1.5`, `1.`, `.5`, and even none at all: `.`, `-` and a bare `Ki` are zero), then a
/// suffix. No whitespace is allowed anywhere.
fn nanos(quantity: &str) -> Option<i128> {
    if quantity.is_empty() {
        return None;
    }
    let (negative, unsigned) = match quantity.as_bytes()[0] {
        b'-' => (true, &quantity[1..]),
        b'+' => (false, &quantity[1..]),
        _ => (false, quantity),
    };
    let (whole, rest) = split_digits(unsigned);
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after) => split_digits(after),
        None => ("", rest),
    };
    let multiplier = multiplier(suffix)?;
    // The significant digits, as numbers, most significant first.
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .skip_while(|&b| b == b'0')
        .map(|b| b - b'0')
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    // The value is `digits` times 10^`shift` nanounits (times a power of two for binary).
    let fraction_len = i64::try_from(fraction.len()).ok()?;
    let mut shift = 9 - fraction_len;
    match multiplier {
        // Saturating is exact enough: a shift near either end of i64 overflows (upwards) or
        // leaves less than a nanounit (downwards) either way.
        Multiplier::Ten(exponent) => shift = shift.saturating_add(exponent),
        Multiplier::Two(exponent) => multiply(&mut digits, 1 << exponent),
    }
    let magnitude = scale(&digits, shift);
    let magnitude = match multiplier {
        Multiplier::Two(_) => Some(magnitude.map_or(BINARY_CAP_NANOS, |m| m.min(BINARY_CAP_NANOS))),
        Multiplier::Ten(_) => magnitude,
    }?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Splits off the leading ASCII digits.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(text.bytes().take_while(u8::is_ascii_digit).count())
}

/// Multiplies a decimal number, given as its digits, by `factor`, in place.
fn multiply(digits: &mut Vec<u8>, factor: u64) {
    let mut carry = 0u128;
    for digit in digits.iter_mut().rev() {
        let product = u128::from(*digit) * u128::from(factor) + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// `digits` (no leading zero, at least one non-zero) times 10^`shift`, rounded away from
/// zero to an integer; `None` if that overflows an `i128`.
fn scale(digits: &[u8], shift: i64) -> Option<i128> {
    let integer = |digits: &[u8]| {
        digits
            .iter()
            .try_fold(0i128, |n, &d| n.checked_mul(10)?.checked_add(i128::from(d)))
    };
    if shift >= 0 {
        // 10^39 is past i128's range: a larger shift of a non-zero number overflows.
        let power = 10i128.checked_pow(u32::try_from(shift).ok()?)?;
        return integer(digits)?.checked_mul(power);
    }
    // Digits past the integer part are dropped; if any of them is non-zero the result
    // rounds away from zero. When all are dropped that is always so, since `digits` is not
    // zero.
    let dropped = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
    let kept = digits.len().saturating_sub(dropped);
    let (integral, fractional) = digits.split_at(kept);
    let round = fractional.iter().any(|&d| d != 0);
    integer(integral)?.checked_add(i128::from(round))
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

    /// Checks each `(quantity, thousandths)` row, naming the row that fails.
    fn check(table: &[(&str, Option<i128>)]) {
        for &(quantity, expected) in table {
            assert_eq!(milli(quantity), expected, "milli({quantity:?})");
        }
    }

    #[test]
    fn suffixes_and_exponents_parse_as_upstreams() {
        const KI: i128 = 1 << 10;
        const GI: i128 = 1 << 30;
        const EI: i128 = 1 << 60;
        check(&[
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("0.1", Some(100)),
            ("+1", Some(1000)),
            ("-1", Some(-1000)),
            ("1Ki", Some(KI * 1000)),
            ("1.5Gi", Some(GI * 1500)),
            ("1G", Some(1_000_000_000_000)),
            // `E` alone is exa, not an exponent; `Ei` is 2^60.
            ("1E", Some(1_000_000_000_000_000_000_000)),
            ("12E", Some(12_000_000_000_000_000_000_000)),
            ("1Ei", Some(EI * 1000)),
            ("7Ei", Some(7 * EI * 1000)),
            // With digits after it, `e` or `E` is a decimal exponent.
            ("2e3", Some(2_000_000)),
            ("1E3", Some(1_000_000)),
            ("1e+3", Some(1_000_000)),
            ("1e-3", Some(1)),
            ("1.3E+6", Some(1_300_000_000)),
            ("0.5e-2", Some(5)),
            ("1n", Some(1)),
            ("4u", Some(1)),
            ("8k", Some(8_000_000)),
            ("7M", Some(7_000_000_000)),
            ("5T", Some(5_000_000_000_000_000)),
            ("2P", Some(2_000_000_000_000_000_000)),
        ]);
    }

    #[test]
    fn values_worked_out_by_hand() {
        check(&[
            // 100.035 * 1024 = 102435.84 units.
            ("100.035Ki", Some(102_435_840)),
            // 0.05 * 2^30 = 53687091.2 units.
            ("0.05Gi", Some(53_687_091_200)),
            // 6.987654321 * 10^9 = 6987654321 units.
            ("6.987654321G", Some(6_987_654_321_000)),
            // 1.53 * 10^12 units.
            ("1.53E12", Some(1_530_000_000_000_000)),
            // 3 * 2^60 = 3458764513820540928 units.
            ("3Ei", Some(3_458_764_513_820_540_928_000)),
            // Exact past f64's 53 bits: 2^53 + 1 units.
            ("9007199254740993", Some(9_007_199_254_740_993_000)),
        ]);
    }

    #[test]
    fn fractions_round_up_to_thousandths() {
        check(&[
            ("0.0001", Some(1)),
            ("1.0001", Some(1001)),
            ("0.3333", Some(334)),
            // Upstream first keeps nanounits, rounding finer values away from zero (0.9n is
            // 1n; 1.024e-9 is 2n), then rounds up.
            ("0.9n", Some(1)),
            ("0.000000000001Ki", Some(1)),
            ("1e-100", Some(1)),
            // Rounding up is towards positive infinity: -0.1m is 0, -1.5m is -1m.
            ("-0.0001", Some(0)),
            ("-1.5m", Some(-1)),
            ("-1e-100", Some(0)),
        ]);
    }

    #[test]
    fn upstreams_lenient_forms_parse() {
        check(&[
            ("1.", Some(1000)),
            (".5", Some(500)),
            ("1.G", Some(1_000_000_000_000)),
            ("007", Some(7000)),
            ("0", Some(0)),
            ("-0", Some(0)),
            ("0e999999999999", Some(0)),
            // Upstream reads a missing number as zero, so these are zero there too.
            (".", Some(0)),
            ("-", Some(0)),
            ("+", Some(0)),
            ("Ki", Some(0)),
            ("m", Some(0)),
        ]);
    }

    #[test]
    fn too_large_is_none_except_binary_which_upstream_caps() {
        // Upstream caps binary SI quantities at 2^63-1 units.
        let cap = Some(i128::from(i64::MAX) * 1000);
        check(&[
            ("1e29", Some(10i128.pow(32))),
            ("1e30", None),
            ("1e9223372036854775807", None),
            ("1e99999999999999999999", None),
            ("999999999999999999999999999999999", None),
            ("8Ei", cap),
            ("9Ei", cap),
            ("9223372036854775807Ki", cap),
            ("99999999999999999999999999999999999999999Ei", cap),
            ("-9Ei", cap.map(|c| -c)),
        ]);
    }

    #[test]
    fn garbage_is_none() {
        check(&[
            ("", None),
            ("1.2.3", None),
            ("1 Ki", None),
            ("1KiB", None),
            (" 1", None),
            ("1 ", None),
            ("12x", None),
            ("1e", None),
            ("1E+", None),
            ("1ee3", None),
            ("1e3.5", None),
            ("1m3", None),
            ("1Ki3", None),
            ("1i", None),
            (".5i", None),
            ("0.1mi", None),
            ("1.1.M", None),
            ("1+1.0M", None),
            ("-3.01e-", None),
            ("--1", None),
            ("1K", None),
            ("aoeu", None),
        ]);
    }

    #[test]
    fn numbers_parse_as_their_json_text() {
        assert_eq!(milli_of(&json!(3)), Some(3000));
        assert_eq!(milli_of(&json!(-2)), Some(-2000));
        assert_eq!(milli_of(&json!(0.25)), Some(250));
        assert_eq!(milli_of(&json!(1e21)), Some(10i128.pow(24)));
        assert_eq!(milli_of(&json!(true)), None);
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
