//! Restores and inspects a memfd (memfd-v2) after arbitrary changes to the pages
//! kernel A wrote; the harness lives in `kho-memfd/fuzz_support/restore.rs`,
//! shared with the test that replays `fuzz/corpus/memfd_restore`.
#![no_main]

#[allow(dead_code)] // the seeds serve the replay test only
mod harness {
    include!("../../kho-memfd/fuzz_support/restore.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a promise breaks.
    let _ = harness::run(data);
});
