//! The fuzz harnesses of kho: each module holds the body of one or more
//! cargo-fuzz targets (in `fuzz/fuzz_targets/`), its input format and its
//! seed inputs. The targets call these functions, and this crate's tests
//! replay every checked-in corpus (`fuzz/corpus/<target>/`) through the
//! same functions, so `cargo test` runs exactly the checks the fuzzer runs.
//!
//! Every harness builds a small [`kho_sim::Machine`], lays out the memory a
//! previous kernel left (some of it arbitrary, from the input), hands it
//! over and restores it, and panics when a promise of the library breaks:
//! a panic inside the library, a failure that leaves something claimed or
//! allocated, or a success that disagrees with a reference reading.
//!
//! | module | fuzz targets |
//! |---|---|
//! | [`block`] | `block_restore` |
//! | [`array`](mod@array) | `array_restore` |
//! | [`vmalloc`] | `vmalloc_restore` |
//! | [`import`] | `track_import`, `v1_import`, `kho_data_import`, `blob_restore`, and the machine of `ffi_incoming` |
//! | [`ops`] | `handover_ops` |
//! | [`layers`] | `luo_restore`, `memfd_restore`, `memblock_restore`, `kexec_meta_restore`, `selftest_restore` |
//!
//! A harness takes its machines from a [`Machines`] pool: making a
//! machine (a memfd, a mapping, RAM faulted in and torn down) costs far
//! more than most inputs, so a fuzz target keeps one pool per thread and
//! each machine goes back to it [reset](kho_sim::Machine::reset) after the
//! input: the next input gets a machine indistinguishable from a new one,
//! so no result depends on the input before.
//!
//! Test scaffolding only: it is not published, and no library crate
//! depends on it.

pub mod array;
pub mod block;
pub mod import;
pub mod layers;
pub mod ops;
pub mod vmalloc;

use std::ops::Deref;

use kho_abi::KhoData;
use kho_sim::{Machine, MachineConfig};

/// Machines kept between inputs, each reset to its new state: see the
/// crate documentation. A fuzz target holds one per thread; a test may
/// share one across its inputs or make one per input.
#[derive(Debug, Default)]
pub struct Machines {
    kept: Vec<Machine>,
}

/// Most machines a pool keeps (one per configuration a harness uses).
const KEPT: usize = 4;

impl Machines {
    /// An empty pool.
    pub fn new() -> Machines {
        Machines::default()
    }

    /// A machine exactly as `Machine::new(cfg)` makes it: a kept one of
    /// that configuration, else a new one. It goes back to the pool, reset,
    /// when the lease is dropped (not when dropped by a panic).
    pub fn lease(&mut self, cfg: MachineConfig) -> Leased<'_> {
        let machine = match self.kept.iter().position(|m| *m.config() == cfg) {
            Some(i) => self.kept.swap_remove(i),
            None => Machine::new(cfg).expect("simulated machine"),
        };
        Leased { pool: Some(self), machine: Some(machine) }
    }

    /// Machines kept now.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn keep(&mut self, mut m: Machine) {
        // A machine that cannot be reset (none a harness makes) is dropped.
        if self.kept.len() < KEPT && m.reset().is_ok() {
            self.kept.push(m);
        }
    }
}

/// A machine taken from [`Machines`]; dereferences to the machine.
#[derive(Debug)]
pub struct Leased<'a> {
    pool: Option<&'a mut Machines>,
    machine: Option<Machine>,
}

impl<'a> Leased<'a> {
    /// [`Machine::kexec`] on the leased machine: the lease now holds the
    /// next kernel's machine (the same RAM).
    pub fn kexec(mut self, kho_data: KhoData) -> Leased<'a> {
        let machine = self.machine.take().map(|m| m.kexec(kho_data));
        Leased { pool: self.pool.take(), machine }
    }
}

impl Deref for Leased<'_> {
    type Target = Machine;

    fn deref(&self) -> &Machine {
        // INVARIANT: `machine` is `None` only inside `kexec` and `drop`.
        self.machine.as_ref().expect("a leased machine")
    }
}

impl Drop for Leased<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let (Some(pool), Some(m)) = (self.pool.take(), self.machine.take()) {
            pool.keep(m);
        }
    }
}
