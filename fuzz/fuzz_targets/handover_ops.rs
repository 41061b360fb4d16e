//! Random operation sequences on the tracker, block sets, vmalloc areas and
//! an array, checked against models across a kexec; the harness and its
//! input format live in `fuzz_support/ops.rs`, shared with the root
//! package's replay test (`tests/fuzz_ops.rs`).
#![no_main]

#[allow(dead_code)] // the seed encoder serves the replay test only
mod harness {
    include!("../../fuzz_support/ops.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
