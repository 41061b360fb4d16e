//! The C ABI of kho: `include/kho.h` and `libkho.a`.
#![cfg_attr(not(test), no_std)]
