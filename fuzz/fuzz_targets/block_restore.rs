//! Restores a block set (block-v1) from arbitrary memory: see
//! `kho_fuzzing::block` for the input format and the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a restore breaks
    // one of its promises.
    let _ = kho_fuzzing::block::run(data);
});
