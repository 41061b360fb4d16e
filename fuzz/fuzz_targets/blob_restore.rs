//! Subtree blobs of arbitrary PA and `blob-size`, checked against a model and restored. The harness lives in `kho-track/fuzz_support/import.rs`, shared
//! with the corpus replay test (`kho-track/tests/fuzz_corpus.rs`).
#![no_main]

#[allow(dead_code)] // the other entry points serve other targets
mod harness {
    include!("../../kho-track/fuzz_support/import.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run_blob(data);
});
