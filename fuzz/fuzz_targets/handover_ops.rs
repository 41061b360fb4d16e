//! Random operation sequences on the tracker, block sets, vmalloc areas and
//! an array, checked against models across a kexec; the harness and its
//! input format live in `kho_fuzzing::ops`, shared with the corpus replay
//! test (`kho-fuzzing/tests/ops.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kho_fuzzing::ops::run(data));
