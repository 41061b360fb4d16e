//! `array-v1`: a sparse array of u64 entries in preserved pages whose
//! worst-case cost per entry is bounded.
#![cfg_attr(not(test), no_std)]
