//! `kho_vmalloc::restore` on an arbitrary descriptor and chunk memory; the
//! input layout and every check live in `kho_vmalloc::fuzzing`, which
//! `cargo test -p kho-vmalloc` also runs over `corpus/vmalloc_restore/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kho_vmalloc::fuzzing::restore_input(data);
});
