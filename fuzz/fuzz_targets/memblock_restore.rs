//! Restores and inspects the memblock subtree (memblock-v1) after arbitrary changes to the
//! pages kernel A wrote; the harness is `kho_fuzzing::layers::memblock`, shared
//! with the test that replays `fuzz/corpus/memblock_restore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; `run` panics if a promise breaks.
    let _ = kho_fuzzing::layers::memblock::run(data);
});
