//! The C ABI of kho: `include/kho.h` and the static archive C links.
//!
//! Every export follows the kernel's KHO API where it has a counterpart
//! (`kho_preserve_folio`, `kho_restore_pages`, `kho_add_subtree`,
//! `kho_preserve_vmalloc`, ...), takes an explicit handle first (kho has no
//! global state) and returns `0` or `-errno` like the kernel does. Handles
//! are opaque; their `_destroy` / `_free` functions accept NULL.
//!
//! | C object | module | what |
//! |---|---|---|
//! | `struct kho_platform` | [`platform`] | the embedder's memory and page allocator, as callbacks |
//! | `struct kho_out` | [`out`] | the outgoing side: preserve, subtrees, `kho_data` |
//! | `struct kho_in` | [`inc`] | the incoming side: import, restore, walks, what stays reserved |
//! | `struct kho_vmalloc` | [`vmalloc`] | vmalloc areas (`vmalloc-v1`) |
//! | `struct kho_block_set`, `struct kho_block_restored` | [`block`] | block sets (`block-v1`) |
//! | `struct kho_array` | [`mod@array`] | sparse arrays (`array-v1`) |
//! | `struct kho_luo` | [`mod@luo`] | the Live Update Orchestrator's sessions and files (`luo-v5`) |
//! | `struct kho_memfd` | [`mod@memfd`] | preserved memfds (`memfd-v2`): guest RAM kept across a kexec |
//! | `struct kho_data`, ... | [`wire`] | the wire structs, laid out exactly as the kernel's |
//! | `struct kho_setup_data`, `kho_chosen_*` | [`handoff`] | how the next kernel finds the handover: x86 `setup_data`, `/chosen` |
//! | errno values, `kho_strerror`, `kho_version` | [`error`] | what the `-errno` results mean, the library's version |
//! | `struct kho_error` | [`record`] | the last typed error of a handle: kind, place, message |
//!
//! Two builds:
//!
//! - hosted (feature `std`, the default): every export runs inside a panic
//!   boundary ([`mod@panic`]) and a panic comes out as `-ENOTRECOVERABLE`;
//! - freestanding (`--no-default-features --target x86_64-unknown-none`):
//!   `no_std`, a panic traps, and the little heap memory kho uses (handles,
//!   the tracker's bookkeeping) comes from two functions the embedder
//!   provides, `kho_host_alloc` and `kho_host_free`.
//!
//! Everything the C side passes in is checked before use: NULL pointers,
//! misaligned pointers, sizes that do not fit, orders and enum values out of
//! range, and handles whose magic number does not match (a handle used
//! after it was freed, as long as its memory was not reused) give an error
//! code, never undefined behaviour on kho's side. Raw pointers become
//! references only in the private module `ptr`.
#![cfg_attr(not(feature = "std"), no_std)]
// The C names are the API: `struct kho_out`, `kho_block_fn`, ...
#![allow(non_camel_case_types)]

extern crate alloc;

pub mod array;
pub mod block;
pub mod error;
pub mod handoff;
pub mod inc;
pub mod loader;
pub mod luo;
pub mod memfd;
pub mod out;
pub mod panic;
pub mod platform;
pub(crate) mod ptr;
pub mod record;
pub mod vmalloc;
pub mod wire;
