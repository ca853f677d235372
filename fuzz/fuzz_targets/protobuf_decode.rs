//! Any body with the protobuf magic must decode or fail with an error, never panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut body = vcluster_core::protobuf::MAGIC.to_vec();
    body.extend_from_slice(data);
    let _ = vcluster_core::protobuf::decode(&body);
});
