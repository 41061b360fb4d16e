//! Restores and inspects the KHO self-test subtree (kho-test-v1) after arbitrary changes to the pages
//! kernel A wrote; the harness lives in `kho-selftest/fuzz_support/restore.rs`,
//! shared with the test that replays `fuzz/corpus/selftest_restore`.
#![no_main]

#[allow(dead_code)] // the seeds serve the replay test only
mod harness {
    include!("../../kho-selftest/fuzz_support/restore.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a promise breaks.
    let _ = harness::run(data);
});
