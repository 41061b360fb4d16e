//! kho's benchmark workloads, limits and report, as a library: the
//! `kho-bench` binary writes the report (every measurement beside its limit,
//! ratios measured in one run), and the criterion benches in `benches/`
//! time the same workloads against the same limits for change-by-change
//! comparison.
//!
//! - [`workloads`]: the random generator, the memfd-like and other block
//!   patterns, and the simulated machine ([`workloads::Arena`]) they are
//!   preserved in.
//! - [`limits`]: the floor each tracker measurement is set against.
//! - [`kernel`]: the kernel's tracker algorithm, reimplemented from its
//!   description, as a baseline.
//! - [`tracker`], [`primitives`], [`growth`]: the measurements.
//! - [`report`], [`rows`], [`svg`], [`sysinfo`], [`timing`], [`formulas`]:
//!   how figures are taken and written.

pub mod formulas;
pub mod growth;
pub mod kernel;
pub mod limits;
pub mod primitives;
pub mod report;
pub mod rows;
pub mod svg;
pub mod sysinfo;
pub mod timing;
pub mod tracker;
pub mod workloads;
