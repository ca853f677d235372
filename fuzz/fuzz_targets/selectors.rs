//! Any selector string parses or fails with an error; a parsed one can be matched.
#![no_main]

use vcluster_core::selector::{FieldSelector, LabelSelector};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(selector) = LabelSelector::parse(text) {
        let _ = selector.matches_object(&serde_json::json!({"metadata": {"labels": {"a": "b"}}}));
    }
    if let Ok(selector) = FieldSelector::parse(text, &["metadata.name", "status.phase"]) {
        let _ = selector.matches_object(&serde_json::json!({"metadata": {"name": "x"}}));
    }
});
