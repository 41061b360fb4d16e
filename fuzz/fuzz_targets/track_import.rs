//! The incoming side of the tracker on arbitrary FDT and tree memory.
#![no_main]

#[allow(dead_code)] // the other entry points serve other targets
mod harness {
    include!("../../kho-track/fuzz_support/import.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
