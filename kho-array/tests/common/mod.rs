//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::cell::Cell;

use kho_abi::{AbiError, Claim, KhoData, Order, PageAlloc, PhysAddr, PhysMem, Preserve, WithTracker};
use kho_array::{Entry, KhoArray};
use kho_sim::{Machine, MachineConfig, ModelTracker};

/// A fresh machine with 32 MiB of RAM: enough for every scenario, and
/// cheap to poison at `boot_done`.
pub fn machine() -> Machine {
    machine_with(32 << 20)
}

/// A fresh machine with `ram` bytes of RAM at the default base.
pub fn machine_with(ram: u64) -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, ram)).expect("machine")
}

/// The entry the tests store at `pos`: a value for even positions, a
/// pointer for odd ones, so both tags are exercised.
pub fn entry_for(pos: u64) -> Entry {
    if pos.is_multiple_of(2) {
        Entry::value(pos >> 2).expect("value")
    } else {
        Entry::pointer((pos | 1) << 3).expect("ptr")
    }
}

/// Writes `(pos, entry)` pairs (ascending) with `push`.
pub fn write<P>(a: &mut KhoArray, p: &P, entries: &[(u64, Entry)])
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let mut w = a.writer(p);
    for &(pos, e) in entries {
        w.push(pos, e).expect("push");
    }
}

/// Every entry as `(position, raw)`.
pub fn collect<P: PhysMem + ?Sized>(a: &KhoArray, p: &P) -> Vec<(u64, u64)> {
    a.iter(p).map(|e| e.map(|(pos, e)| (pos, e.raw()))).collect::<Result<_, _>>().expect("read")
}

/// `(position, raw)` of `(position, entry)` pairs.
pub fn raw(entries: &[(u64, Entry)]) -> Vec<(u64, u64)> {
    entries.iter().map(|&(pos, e)| (pos, e.raw())).collect()
}

/// Kexec with everything `t` preserved: the next machine (booted, so
/// unpreserved memory is poisoned) and its incoming tracker.
pub fn kexec(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    (m2, ModelTracker::incoming(blocks))
}

/// Reads the words of the page at `pa`.
pub fn page_words(m: &Machine, pa: PhysAddr) -> Vec<u64> {
    let mut bytes = vec![0u8; kho_abi::PAGE_SIZE];
    m.read(pa, &mut bytes).expect("read page");
    bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8"))).collect()
}

/// Writes `words` to the page at `pa` from word 0.
pub fn set_words(m: &Machine, pa: PhysAddr, at: usize, words: &[u64]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    m.write(PhysAddr::new(pa.as_u64() + at as u64 * 8), &bytes).expect("write page");
}

/// A tracker that refuses the `n`-th preserve from now (1 = the next).
#[derive(Debug, Default)]
pub struct FailingTracker {
    pub inner: ModelTracker,
    pub fail_at: Cell<u64>,
}

impl Preserve for FailingTracker {
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        let n = self.fail_at.get();
        self.fail_at.set(n.saturating_sub(1));
        if n == 1 {
            return Err(AbiError::Forbidden { pa, order: order.get(), why: "injected" });
        }
        self.inner.preserve(pa, order)
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.inner.unpreserve(pa, order)
    }
}

/// A claim that never refuses and only counts, as a careless platform
/// might: restore must still terminate and balance its claims.
#[derive(Debug, Default)]
pub struct LaxClaim {
    pub claims: Cell<u64>,
    pub unclaims: Cell<u64>,
}

impl Claim for LaxClaim {
    fn claim(&self, _: PhysAddr, _: Order) -> Result<(), AbiError> {
        self.claims.set(self.claims.get() + 1);
        Ok(())
    }

    fn unclaim(&self, _: PhysAddr, _: Order) {
        self.unclaims.set(self.unclaims.get() + 1);
    }
}

/// Joins a machine and a tracker.
pub fn with<'a, T>(m: &'a Machine, t: &'a T) -> WithTracker<'a, Machine, T> {
    WithTracker::new(m, t)
}
