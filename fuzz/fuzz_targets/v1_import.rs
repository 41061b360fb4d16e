//! The `kho-v1` import (chunk list, bitmaps, conversion) on arbitrary chunk
//! and bitmap memory. The harness lives in `kho_fuzzing::import`, shared
//! with the corpus replay test (`kho-fuzzing/tests/import.rs`).
#![no_main]

use std::cell::RefCell;

use kho_fuzzing::Machines;

thread_local! {
    /// The machines, reset after each input.
    static MACHINES: RefCell<Machines> = RefCell::new(Machines::new());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    MACHINES.with_borrow_mut(|ms| {
        let _ = kho_fuzzing::import::run_v1_in(ms, data);
    });
});
