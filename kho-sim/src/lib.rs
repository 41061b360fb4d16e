//! A simulated machine for kho's tests, examples, benches and fuzzers.
//!
//! - [`Machine`]: RAM at a non-zero physical base (a sparse memfd mapped into
//!   this process, never at a virtual address equal to its PA), a buddy page
//!   allocator with leak counting and failure injection, scratch areas, and
//!   kexec emulation: RAM is kept, only [`KhoData`](kho_abi::KhoData) is
//!   handed over, the next kernel allocates from scratch only until
//!   [`Machine::boot_done`], which poisons every page neither preserved nor
//!   in use.
//! - Machine images: ELF64 core files with RAM in `PT_LOAD` segments and
//!   `kho_data` in a `"KHO"` note ([`Machine::save_image`],
//!   [`Machine::load_image`]). Their headers are read by [`elf::read_headers`],
//!   which the `kho` command line uses too.
//! - [`ModelTracker`]: a strict reference tracker implementing
//!   [`Preserve`](kho_abi::Preserve) and [`Claim`](kho_abi::Claim).
//!
//! ```
//! use kho_abi::{Claim, KhoData, Order, PageAlloc, Preserve, WithTracker};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let p = WithTracker::new(&m, &t);
//! let pa = p.alloc_pages(Order::ZERO)?;
//! m.fill_random(pa, 4096, 1)?;
//! let sum = m.checksum(pa, 4096)?;
//! p.preserve(pa, Order::ZERO)?;
//!
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let p2 = WithTracker::new(&m2, &t2);
//! p2.claim(pa, Order::ZERO)?;
//! assert_eq!(m2.checksum(pa, 4096)?, sum);
//! p2.free_pages(pa, Order::ZERO);
//! assert_eq!(m2.reserved_pages(), 0);
//! # Ok::<(), kho_sim::SimError>(())
//! ```

mod alloc;
mod config;
mod content;
pub mod elf;
mod error;
mod image;
mod machine;
mod mapping;
mod model;
pub mod poke;
mod ram;
pub mod vector;

pub use config::{DEFAULT_MAX_ORDER, DEFAULT_RAM_BASE, DEFAULT_RAM_SIZE, DEFAULT_SCRATCH_SIZE, MachineConfig};
pub use content::{ByteStream, Checksum};
pub use error::SimError;
pub use machine::{Machine, POISON_BYTE};
pub use mapping::SimMapping;
pub use model::ModelTracker;
