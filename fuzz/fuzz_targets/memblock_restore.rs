//! Restores and inspects the memblock subtree (memblock-v1) after arbitrary changes to the
//! pages kernel A wrote; the harness is `kho_fuzzing::layers::memblock`, shared
//! with the test that replays `fuzz/corpus/memblock_restore`.
#![no_main]

use std::cell::RefCell;

use kho_fuzzing::Machines;

thread_local! {
    /// The machine, reset after each input.
    static MACHINES: RefCell<Machines> = RefCell::new(Machines::new());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a promise breaks.
    MACHINES.with_borrow_mut(|ms| {
        let _ = kho_fuzzing::layers::memblock::run(ms, data);
    });
});
