//! JSON patches (RFC 6902, `application/json-patch+json`) within kube-apiserver's bounds:
//! at most [`MAX_OPERATIONS`] operations (413 past them, as upstream's patch handler), and
//! `copy` operations adding at most [`MAX_COPY_BYTES`] between them (the accumulated copy
//! size limit of evanphx/json-patch, which kube-apiserver sets from its
//! `JSONPatchMaxCopyBytes`; 422 past it).
//!
//! The operations are applied one at a time by the `json-patch` crate, and each copy is
//! weighed before it is made, so a patch whose copies double a subtree step after step is
//! refused while the document is still small. Everything else a patch adds comes from its
//! own body, which the request limit bounds.

use std::io;

use json_patch::{Patch, PatchOperation};
use serde::Deserialize;
use serde_json::Value;

use crate::status::{ApiError, Reason};

/// The most operations one JSON patch may have (kube-apiserver's `maxJSONPatchOperations`).
pub const MAX_OPERATIONS: usize = 10_000;

/// The most all `copy` operations of one patch may add, in bytes of JSON (kube-apiserver's
/// default `JSONPatchMaxCopyBytes`, 3 MiB).
pub const MAX_COPY_BYTES: usize = 3 << 20;

/// Applies the JSON patch `patch` to `doc`. On an error `doc` may be partly patched: callers
/// patch a copy.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Patch(operations) = Patch::deserialize(patch)
        .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
    if operations.len() > MAX_OPERATIONS {
        return Err(ApiError::new(
            413,
            Reason::RequestEntityTooLarge,
            format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is \
                 {MAX_OPERATIONS}, got {}",
                operations.len()
            ),
        ));
    }
    let mut copied = 0;
    for (i, operation) in operations.iter().enumerate() {
        if let PatchOperation::Copy(copy) = operation
            && let Some(source) = doc.pointer(copy.from.as_str())
        {
            copied = copy_budget(source, copied)?;
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(operation)).map_err(|e| {
            ApiError::new(
                422,
                Reason::Invalid,
                format!(
                    "the JSON patch could not be applied: operation '/{i}' failed at path '{}': {}",
                    e.path, e.kind
                ),
            )
        })?;
    }
    Ok(())
}

/// What the copies of a patch have added once `source` is copied too, after `copied`;
/// upstream's 422 past [`MAX_COPY_BYTES`]. Weighing stops at the limit, so no copy is
/// serialized further than the budget reaches.
fn copy_budget(source: &Value, copied: usize) -> Result<usize, ApiError> {
    /// Counts what is written, failing once past what is left of the budget.
    struct Budget {
        left: usize,
        written: usize,
    }
    impl io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or_else(|| io::Error::other("over the copy budget"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut budget = Budget {
        left: MAX_COPY_BYTES.saturating_sub(copied),
        written: 0,
    };
    match serde_json::to_writer(&mut budget, source) {
        Ok(()) => Ok(copied + budget.written),
        Err(_) => Err(ApiError::new(
            422,
            Reason::Invalid,
            format!(
                "Unable to complete the copy, the accumulated size increase of copy is {}, \
                 exceeding the limit {MAX_COPY_BYTES}",
                copied + budget.written
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_applies_operation_by_operation() {
        let mut doc = json!({"data": {"a": "1"}});
        let patch = json!([
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "copy", "from": "/data/a", "path": "/data/c"},
            {"op": "move", "from": "/data/b", "path": "/data/d"},
            {"op": "remove", "path": "/data/a"},
            {"op": "test", "path": "/data/c", "value": "1"},
        ]);
        apply(&mut doc, &patch).expect("applies");
        assert_eq!(doc, json!({"data": {"c": "1", "d": "2"}}));
    }

    #[test]
    fn a_failing_operation_is_a_422_naming_it() {
        let mut doc = json!({"data": {"a": "1"}});
        let patch = json!([
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "test", "path": "/data/a", "value": "other"},
        ]);
        let e = apply(&mut doc, &patch).expect_err("the test fails");
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "the JSON patch could not be applied: operation '/1' failed at path '/data/a': \
             value did not match"
        );
        let e = apply(&mut doc, &json!({"op": "add"})).expect_err("not a list");
        assert_eq!(e.code, 400);
    }

    #[test]
    fn more_operations_than_upstream_allows_are_a_413() {
        let one = json!({"op": "test", "path": "/a", "value": 1});
        let mut doc = json!({"a": 1});
        let at_limit = Value::Array(vec![one.clone(); MAX_OPERATIONS]);
        apply(&mut doc, &at_limit).expect("at the limit");
        let over = Value::Array(vec![one; MAX_OPERATIONS + 1]);
        let e = apply(&mut doc, &over).expect_err("over the limit");
        assert_eq!((e.code, e.reason), (413, Reason::RequestEntityTooLarge));
        assert_eq!(
            e.message,
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, \
             got 10001"
        );
    }

    #[test]
    fn copies_that_double_a_subtree_stop_at_the_copy_limit() {
        // Each copy doubles the subtree: 40 steps would build 2^40 leaves.
        let mut doc = json!({"data": {"x": "0123456789abcdef"}});
        let mut ops = vec![json!({"op": "add", "path": "/t", "value": {"l": "0123456789abcdef"}})];
        for _ in 0..40 {
            ops.push(json!({"op": "copy", "from": "/t", "path": "/t/a"}));
            ops.push(json!({"op": "copy", "from": "/t", "path": "/t/b"}));
        }
        ops.push(json!({"op": "test", "path": "/data/x", "value": "no"}));
        let e = apply(&mut doc, &Value::Array(ops)).expect_err("refused");
        assert_eq!((e.code, e.reason), (422, Reason::Invalid));
        assert!(
            e.message.starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            ) && e.message.ends_with("exceeding the limit 3145728"),
            "{}",
            e.message
        );
        // Refused before the document grew past the budget (and the patch's own values).
        let built = serde_json::to_vec(&doc).expect("serializes").len();
        assert!(built <= 2 * MAX_COPY_BYTES, "{built} bytes");
    }

    #[test]
    fn copies_within_the_limit_apply() {
        let big = "x".repeat(MAX_COPY_BYTES / 4);
        let mut doc = json!({"a": big});
        let copies: Vec<Value> = (0..3)
            .map(|i| json!({"op": "copy", "from": "/a", "path": format!("/c{i}")}))
            .collect();
        apply(&mut doc, &Value::Array(copies)).expect("three quarters of the budget");
        let five: Vec<Value> = (0..5)
            .map(|i| json!({"op": "copy", "from": "/a", "path": format!("/d{i}")}))
            .collect();
        let e = apply(&mut doc, &Value::Array(five)).expect_err("the copies add up past it");
        assert_eq!(e.code, 422);
    }
}
