//! `block-v1`: linked-block serialization, the kernel's block ABI.
#![cfg_attr(not(test), no_std)]
