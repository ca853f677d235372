//! Any JSON object patched onto any JSON object: a result or an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(pair)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let [original, patch] = pair.as_slice() {
        for (api_version, kind) in [("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "Service")] {
            let _ = vcluster_core::patch::strategic_merge(original, patch, api_version, kind);
        }
    }
});
