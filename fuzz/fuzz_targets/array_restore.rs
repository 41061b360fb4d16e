//! Restores a KHO array (array-v1) from arbitrary memory; the harness and
//! the input format live in `kho_fuzzing::array`, shared with the test
//! that replays `fuzz/corpus/array_restore`.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

use kho_fuzzing::Machines;

thread_local! {
    /// The machines, reset after each input.
    static MACHINES: RefCell<Machines> = RefCell::new(Machines::new());
}


fuzz_target!(|data: &[u8]| {
    MACHINES.with_borrow_mut(|ms| {
        let _ = kho_fuzzing::array::run_in(ms, data);
    });
});
