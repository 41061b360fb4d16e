//! The preserved-memory tracker of Linux Kexec HandOver: the radix tree, the
//! root FDT with its subtrees, scratch areas, and the outgoing (preserve) and
//! incoming (restore) sides.
#![cfg_attr(not(test), no_std)]
