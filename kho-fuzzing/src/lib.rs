//! The fuzz harnesses of kho: each module holds the body of one or more
//! cargo-fuzz targets (in `fuzz/fuzz_targets/`), its input format and its
//! seed inputs. The targets call these functions, and this crate's tests
//! replay every checked-in corpus (`fuzz/corpus/<target>/`) through the
//! same functions, so `cargo test` runs exactly the checks the fuzzer runs.
//!
//! Every harness builds a small [`kho_sim::Machine`], lays out the memory a
//! previous kernel left (some of it arbitrary, from the input), hands it
//! over and restores it, and panics when a promise of the library breaks:
//! a panic inside the library, a failure that leaves something claimed or
//! allocated, or a success that disagrees with a reference reading.
//!
//! | module | fuzz targets |
//! |---|---|
//! | [`block`] | `block_restore` |
//! | [`array`](mod@array) | `array_restore` |
//! | [`vmalloc`] | `vmalloc_restore` |
//! | [`import`] | `track_import`, `v1_import`, `kho_data_import`, `blob_restore`, and the machine of `ffi_incoming` |
//! | [`ops`] | `handover_ops` |
//! | [`layers`] | `luo_restore`, `memfd_restore`, `memblock_restore`, `kexec_meta_restore`, `selftest_restore` |
//!
//! Test scaffolding only: it is not published, and no library crate
//! depends on it.

pub mod array;
pub mod block;
pub mod import;
pub mod layers;
pub mod ops;
pub mod vmalloc;
