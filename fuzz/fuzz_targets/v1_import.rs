//! The `kho-v1` import (chunk list, bitmaps, conversion) on arbitrary chunk and bitmap memory. The harness lives in `kho-track/fuzz_support/import.rs`, shared
//! with the corpus replay test (`kho-track/tests/fuzz_corpus.rs`).
#![no_main]

#[allow(dead_code)] // the other entry points serve other targets
mod harness {
    include!("../../kho-track/fuzz_support/import.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run_v1(data);
});
