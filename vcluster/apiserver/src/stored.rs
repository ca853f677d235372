//! What every stored object must be to be read back, and what a reader does with one that
//! is not: the floor under the watch caches, the feed and the API's reads.
//!
//! The reader is `serde_json`, which refuses a document nesting 128 arrays and objects deep;
//! a write is checked against that same depth as it will be stored (`managedFields`
//! included, which mirror the object's structure a few levels deeper), so that nothing
//! accepted is unreadable. A stored value that cannot be read all the same (written by an
//! older server, or planted in the store) is skipped by lists, watches and controllers,
//! with an error naming its key, rather than failing them.

use serde_json::Value;
use vcluster_core::object::with_resource_version;
use vcluster_store::KeyValue;

/// The deepest nesting of arrays and objects a stored object may have: `serde_json` reads
/// 127 levels and refuses the 128th (its recursion limit).
pub(crate) const MAX_DEPTH: usize = 127;

/// Whether `value` nests arrays and objects deeper than [`MAX_DEPTH`] (a scalar is depth 0,
/// `{}` depth 1). Walked with a stack of its own, so any value can be measured.
pub(crate) fn too_deep(value: &Value) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let deeper = depth + 1;
        match value {
            Value::Array(_) | Value::Object(_) if deeper > MAX_DEPTH => return true,
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, deeper))),
            Value::Object(fields) => stack.extend(fields.values().map(|child| (child, deeper))),
            _ => {}
        }
    }
    false
}

/// A stored value decoded, with its resourceVersion (the store revision) set.
pub(crate) fn decode(kv: &KeyValue) -> serde_json::Result<Value> {
    let object = serde_json::from_slice(&kv.value)?;
    Ok(with_resource_version(object, kv.mod_revision))
}

/// A stored value decoded, or `None` when it cannot be: logged with its key, so that one
/// unreadable object costs a list, a watch or a controller that object only.
pub(crate) fn readable(kv: &KeyValue) -> Option<Value> {
    match decode(kv) {
        Ok(object) => Some(object),
        Err(e) => {
            tracing::error!(
                key = %String::from_utf8_lossy(&kv.key),
                revision = kv.mod_revision,
                error = %e,
                "a stored object cannot be read; skipped (a DELETE of it removes it)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` arrays inside each other.
    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn the_depth_check_and_the_reader_agree() {
        let deepest: Value = serde_json::from_str(&nested(MAX_DEPTH)).expect("readable");
        assert!(!too_deep(&deepest));
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        // One level more, built in memory as a write (a JSON patch) can: refused.
        let deeper = Value::Array(vec![deepest]);
        assert!(too_deep(&deeper));
        let text = serde_json::to_string(&deeper).expect("serializes");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "the reader refuses it too"
        );
    }

    #[test]
    fn depth_counts_objects_and_arrays_alike_and_scalars_not() {
        assert!(!too_deep(&Value::from(1)));
        let mut object = serde_json::json!("leaf");
        for i in 0..MAX_DEPTH {
            object = if i % 2 == 0 {
                serde_json::json!({ "f": object })
            } else {
                serde_json::json!([object])
            };
        }
        assert!(!too_deep(&object));
        assert!(too_deep(&serde_json::json!({ "f": object })));
    }

    #[test]
    fn an_unreadable_value_is_skipped_and_a_readable_one_served_at_its_revision() {
        let kv = |value: &str| KeyValue {
            key: "/configmaps/ns/x".into(),
            value: value.to_owned().into(),
            create_revision: 3,
            mod_revision: 7,
            version: 1,
            lease: None,
        };
        assert!(readable(&kv(&nested(MAX_DEPTH + 1))).is_none());
        assert!(readable(&kv("{not json")).is_none());
        let object = readable(&kv(r#"{"metadata":{"name":"x"}}"#)).expect("readable");
        assert_eq!(object["metadata"]["resourceVersion"], "7");
    }
}
