//! `vmalloc-v1`: preservation of virtually contiguous areas.
#![cfg_attr(not(test), no_std)]
