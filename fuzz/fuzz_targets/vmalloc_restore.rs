//! `kho_vmalloc::restore` on an arbitrary descriptor and chunk memory; the
//! input layout and every check live in `kho_fuzzing::vmalloc`, which
//! `cargo test -p kho-fuzzing` also runs over `corpus/vmalloc_restore/`.
#![no_main]

use std::cell::RefCell;

use kho_fuzzing::Machines;

thread_local! {
    /// The machines, reset after each input.
    static MACHINES: RefCell<Machines> = RefCell::new(Machines::new());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    MACHINES.with_borrow_mut(|ms| {
        let _ = kho_fuzzing::vmalloc::restore_input_in(ms, data);
    });
});
