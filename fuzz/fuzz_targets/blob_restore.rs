//! Subtree blobs of arbitrary PA and `blob-size`, checked against a model
//! and restored. The harness lives in `kho_fuzzing::import`, shared with
//! the corpus replay test (`kho-fuzzing/tests/import.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kho_fuzzing::import::run_blob(data));
