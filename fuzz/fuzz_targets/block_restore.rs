//! Restores a block set (block-v1) from arbitrary memory: see
//! `kho_fuzzing::block` for the input format and the invariants checked.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

use kho_fuzzing::Machines;

thread_local! {
    /// The machines, reset after each input.
    static MACHINES: RefCell<Machines> = RefCell::new(Machines::new());
}


fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a restore breaks
    // one of its promises.
    MACHINES.with_borrow_mut(|ms| {
        let _ = kho_fuzzing::block::run_in(ms, data);
    });
});
