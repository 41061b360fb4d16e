//! kho: Linux Kexec HandOver serialization, byte-compatible with mainline
//! Linux. This facade re-exports the layers.
#![no_std]

pub use kho_abi as abi;
pub use kho_array as array;
pub use kho_block as block;
pub use kho_track as track;
pub use kho_vmalloc as vmalloc;
