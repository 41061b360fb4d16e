//! Helpers shared by the scenario tests: machines, scattered areas, kexec.
#![allow(dead_code)]

use kho_abi::{KhoData, KhoVmalloc, Order, PAGE_SIZE, PageAlloc, PhysAddr, VmallocFlags, WithTracker};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use kho_vmalloc::VmallocError;

pub fn o(n: u64) -> Order {
    Order::new(n, "test order").unwrap()
}

pub const PAGE: u64 = PAGE_SIZE as u64;

/// A default machine (256 MiB at 4 GiB, max order 10).
pub fn machine() -> Machine {
    Machine::new(MachineConfig::default()).unwrap()
}

/// A machine with `ram` bytes of RAM at the default base.
pub fn machine_with(ram: u64) -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, ram)).unwrap()
}

/// Deterministic xorshift, for shuffles.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// `n` blocks of `order` allocated from `m`, in a shuffled (virtual) order
/// so that they are not physically consecutive.
pub fn scattered(m: &Machine, n: usize, order: Order, seed: u64) -> Vec<PhysAddr> {
    let mut v: Vec<PhysAddr> = (0..n).map(|_| m.alloc_pages(order).unwrap()).collect();
    Rng::new(seed).shuffle(&mut v);
    v
}

/// Preserves `blocks` through a fresh ModelTracker.
pub fn preserve(m: &Machine, blocks: &[PhysAddr], order: Order) -> (ModelTracker, KhoVmalloc) {
    let t = ModelTracker::new();
    let d =
        kho_vmalloc::preserve(&WithTracker::new(m, &t), blocks.iter().copied(), order, VmallocFlags::ALLOC).unwrap();
    (t, d)
}

/// Kexec and boot the next kernel: the machine and its incoming tracker.
pub fn handover(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let next = m.kexec(KhoData::default());
    next.boot_done(&mut blocks.iter().copied()).unwrap();
    (next, ModelTracker::incoming(blocks))
}

/// Restores into a Vec.
pub fn restore(
    m: &Machine,
    t: &ModelTracker,
    d: &KhoVmalloc,
) -> Result<(kho_vmalloc::RestoredArea, Vec<PhysAddr>), VmallocError> {
    let mut v = Vec::new();
    let area = kho_vmalloc::restore(&WithTracker::new(m, t), d, |pa| v.push(pa))?;
    Ok((area, v))
}

/// The chain of a descriptor as the machine holds it: for each chunk page,
/// its PA and its non-zero entries.
pub fn chain(m: &Machine, d: &KhoVmalloc) -> Vec<(PhysAddr, Vec<u64>)> {
    let mut out = Vec::new();
    let mut pa = d.first;
    while pa != 0 {
        let mut page = vec![0u8; PAGE_SIZE];
        m.read(PhysAddr::new(pa), &mut page).unwrap();
        let words: Vec<u64> = page.chunks(8).map(|w| u64::from_ne_bytes(w.try_into().unwrap())).collect();
        let entries = words[1..].iter().copied().take_while(|&w| w != 0).collect();
        out.push((PhysAddr::new(pa), entries));
        pa = words[0];
        assert!(out.len() < 100_000, "chain loops");
    }
    out
}

/// Writes `phys[entry]` of the chunk page at `chunk`.
pub fn set_entry(m: &Machine, chunk: PhysAddr, entry: usize, value: u64) {
    m.write(PhysAddr::new(chunk.as_u64() + 8 + 8 * entry as u64), &value.to_ne_bytes()).unwrap();
}

/// Reads `phys[entry]` of the chunk page at `chunk`.
pub fn entry(m: &Machine, chunk: PhysAddr, entry: usize) -> u64 {
    let mut b = [0u8; 8];
    m.read(PhysAddr::new(chunk.as_u64() + 8 + 8 * entry as u64), &mut b).unwrap();
    u64::from_ne_bytes(b)
}

/// Writes the `next` link of the chunk page at `chunk`.
pub fn set_next(m: &Machine, chunk: PhysAddr, next: u64) {
    m.write(chunk, &next.to_ne_bytes()).unwrap();
}
