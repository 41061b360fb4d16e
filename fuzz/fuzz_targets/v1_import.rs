//! The `kho-v1` import (chunk list, bitmaps, conversion) on arbitrary chunk
//! and bitmap memory. The harness lives in `kho_fuzzing::import`, shared
//! with the corpus replay test (`kho-fuzzing/tests/import.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kho_fuzzing::import::run_v1(data));
