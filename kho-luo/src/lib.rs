//! `luo-v5`: the `LUO` subtree of a Linux 7.2 Kexec HandOver, the Live
//! Update Orchestrator's preserved sessions and files.
//!
//! # Layout
//!
//! All structs packed, native-endian; the block sets are `block-v1`
//! (`kho-block`).
//!
//! ```text
//! LUO subtree blob (32 bytes)               FLB region (pgcnt pages)
//! +---------------------+                   +-----------+-----------+
//! | char compatible[8]  | "luo-v5\0\0"      | u64 pgcnt | u64 count |
//! | u64 liveupdate_num  |                   +-----------+-----------+
//! | u64 sessions_pa  ---+--+                | count x { char name[48];
//! | u64 flbs_pa  -------+--|--------------->|   u64 data; u64 count } |
//! +---------------------+  |
//!                          v
//!   session block set: 80-byte entries, 51 per block
//!   { u8 name[64] (NUL-terminated, unique); u64 files; u64 count }
//!                                              |
//!                                              v
//!      file block set: 64-byte entries, 63 per block
//!      { char compatible[48] ("memfd-v2", ...); u64 data; u64 token }
//! ```
//!
//! - `sessions_pa` is written at reboot; a live kernel's blob holds 0.
//! - A session's `count` equals the entries its file chain holds; a file's
//!   token is unique in its session; `data` belongs to the file's handler
//!   (for `memfd-v2` the PA of its descriptor, see `kho-memfd`).
//! - The next kernel panics on a compatible mismatch: [`restore`] refuses
//!   with [`LuoError::Compatible`].
//!
//! # Use
//!
//! [`restore`] is the next kernel's reader: it validates everything and
//! claims every page ([`RestoredLuo`]); [`inspect`] runs the same checks and
//! gives every claim back, returning a plain [`Luo`]; [`LuoWriter`] builds
//! the state as a 7.2 kernel does.
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_luo::{LuoWriter, inspect};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let p = WithTracker::new(&m, &t);
//! let mut w = LuoWriter::new(&p, 1)?;
//! let vm = w.create_session(&p, b"vm0")?;
//! w.preserve_file(&p, vm, "memfd-v2", 0x1234_0000, 7)?;
//! w.serialize(&p)?; // the reboot path
//!
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let luo = inspect(&WithTracker::new(&m2, &t2), w.blob(), LuoWriter::BLOB_SIZE)?;
//! assert_eq!(luo.sessions[0].name, "vm0");
//! assert_eq!(luo.sessions[0].files[0].token, 7);
//! assert!(t2.claimed().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod abi;
mod error;
mod read;
mod write;

pub use abi::{LUO_SUBTREE, LUO_V5};
pub use error::{Fault, LuoError, SessionAt};
pub use read::{File, Flb, Flbs, Luo, RestoredLuo, Session, inspect, restore};
pub use write::{LuoWriter, SessionId};
