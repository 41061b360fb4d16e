//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use kho_abi::{AbiError, BlockHeader, Claim, KhoData, Order, PAGE_SIZE, PhysAddr, Preserve};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use zerocopy::IntoBytes;

pub const PAGE: u64 = PAGE_SIZE as u64;

/// A fresh default machine (256 MiB at 4 GiB).
pub fn machine() -> Machine {
    Machine::new(MachineConfig::default()).expect("machine")
}

/// Kexec with the tracker's blocks preserved: the next machine after
/// `boot_done` (unpreserved pages poisoned) and its incoming tracker.
pub fn handover(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    (m2, ModelTracker::incoming(blocks))
}

/// Writes a block header straight into RAM.
pub fn write_header(m: &Machine, block: PhysAddr, next: u64, count: u64) {
    m.write(block, BlockHeader { next, count }.as_bytes()).expect("header in RAM");
}

/// Reads a block header straight from RAM.
pub fn read_header(m: &Machine, block: PhysAddr) -> (u64, u64) {
    let mut b = [0u8; 16];
    m.read(block, &mut b).expect("header in RAM");
    (u64::from_ne_bytes(b[..8].try_into().unwrap()), u64::from_ne_bytes(b[8..].try_into().unwrap()))
}

/// The `(next, count)` of every block reachable from `head`, at most
/// `limit` of them.
pub fn walk(m: &Machine, head: PhysAddr, limit: usize) -> Vec<(PhysAddr, u64)> {
    let mut out = Vec::new();
    let mut b = head;
    while !b.is_null() && out.len() < limit {
        let (next, count) = read_header(m, b);
        out.push((b, count));
        b = PhysAddr::new(next);
    }
    out
}

/// The page `i` pages above the RAM base, outside the default scratch area
/// for `i < 32768`.
pub fn page(m: &Machine, i: u64) -> PhysAddr {
    m.ram_base().checked_add(i * PAGE).expect("page in RAM")
}

/// A distinctive byte pattern for entry `i` of `size` bytes.
pub fn entry_bytes(i: u64, size: usize) -> Vec<u8> {
    (0..size).map(|j| (i.wrapping_mul(131).wrapping_add(j as u64 * 7) ^ (i >> 8)) as u8).collect()
}

/// A tracker that delegates to a [`ModelTracker`] but fails the `n`-th
/// preserve call (1 = the next one), or the `n`-th unpreserve call.
#[derive(Debug, Default)]
pub struct FailingPreserve {
    pub inner: ModelTracker,
    pub fail_at: std::cell::Cell<Option<u64>>,
    pub calls: std::cell::Cell<u64>,
    pub unpreserve_fail_at: std::cell::Cell<Option<u64>>,
    pub unpreserve_calls: std::cell::Cell<u64>,
}

impl Preserve for FailingPreserve {
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.calls.set(self.calls.get() + 1);
        if self.fail_at.get() == Some(self.calls.get()) {
            return Err(AbiError::NoMemory { order: 0 });
        }
        self.inner.preserve(pa, order)
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.unpreserve_calls.set(self.unpreserve_calls.get() + 1);
        if self.unpreserve_fail_at.get() == Some(self.unpreserve_calls.get()) {
            return Err(AbiError::NotPreserved { pa, order: order.get() });
        }
        self.inner.unpreserve(pa, order)
    }
}

/// A claimer that, unlike the trait asks, lets a block be claimed more than
/// once; it counts claims per block so a test can check every claim was
/// undone exactly once.
#[derive(Debug, Default)]
pub struct LaxClaim {
    pub preserved: std::collections::BTreeSet<u64>,
    pub claims: std::cell::RefCell<std::collections::BTreeMap<u64, i64>>,
}

impl Claim for LaxClaim {
    fn claim(&self, pa: PhysAddr, _order: Order) -> Result<(), AbiError> {
        if !self.preserved.contains(&pa.as_u64()) {
            return Err(AbiError::NotPreserved { pa, order: 0 });
        }
        *self.claims.borrow_mut().entry(pa.as_u64()).or_default() += 1;
        Ok(())
    }

    fn unclaim(&self, pa: PhysAddr, _order: Order) {
        let mut c = self.claims.borrow_mut();
        let n = c.entry(pa.as_u64()).or_default();
        *n -= 1;
        assert!(*n >= 0, "{pa} unclaimed more often than claimed");
    }
}
