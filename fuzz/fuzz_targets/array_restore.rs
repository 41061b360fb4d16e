//! Restores a KHO array (array-v1) from arbitrary memory; the harness and
//! the input format live in `kho_fuzzing::array`, shared with the test
//! that replays `fuzz/corpus/array_restore`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kho_fuzzing::array::run(data);
});
