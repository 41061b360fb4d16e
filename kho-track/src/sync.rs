//! The atomics the tracker uses: `core`'s normally, loom's under
//! `--cfg loom` so the model checker sees every access.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU64, Ordering};
