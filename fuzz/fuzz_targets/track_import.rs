//! The incoming side of the tracker on arbitrary FDT and tree memory. The
//! harness lives in `kho_fuzzing::import`, shared with the corpus replay
//! test (`kho-fuzzing/tests/import.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kho_fuzzing::import::run(data));
