//! The import on an arbitrary `kho_data` and scratch array over a valid
//! handover. The harness lives in `kho_fuzzing::import`, shared with the
//! corpus replay test (`kho-fuzzing/tests/import.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kho_fuzzing::import::run_kho_data(data);
});
