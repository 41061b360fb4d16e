//! `kho_vmalloc::restore` on an arbitrary descriptor and chunk memory; the
//! input layout and every check live in `kho_fuzzing::vmalloc`, which
//! `cargo test -p kho-fuzzing` also runs over `corpus/vmalloc_restore/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kho_fuzzing::vmalloc::restore_input(data);
});
