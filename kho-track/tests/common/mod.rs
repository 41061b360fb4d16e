//! Shared helpers for the tracker's scenario tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use kho_abi::{KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem};
use kho_sim::{Machine, MachineConfig};
use kho_track::{Incoming, Tracker, TrackerOptions};

pub fn order(n: u32) -> Order {
    Order::new(u64::from(n), "test order").unwrap()
}

pub fn machine() -> Machine {
    Machine::new(MachineConfig::default()).unwrap()
}

pub fn machine_with(f: impl FnOnce(&mut MachineConfig)) -> Machine {
    let mut cfg = MachineConfig::default();
    f(&mut cfg);
    Machine::new(cfg).unwrap()
}

pub fn tracker(m: &Machine) -> Tracker<&Machine> {
    Tracker::new(m, m.scratch(), TrackerOptions::default()).unwrap()
}

/// Every block of the tracker in walk order.
pub fn blocks_of<P: PhysMem + PageAlloc>(t: &Tracker<P>) -> Vec<(PhysAddr, Order)> {
    let mut v = Vec::new();
    let _ = t.for_each_block::<()>(&mut |pa, o| {
        v.push((pa, o));
        ControlFlow::Continue(())
    });
    v
}

pub fn ranges_of<P: PhysMem + PageAlloc>(t: &Tracker<P>) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let _ = t
        .for_each_range::<()>(&mut |pa, len| {
            v.push((pa.as_u64(), len));
            ControlFlow::Continue(())
        })
        .unwrap();
    v
}

pub fn incoming_blocks<P: PhysMem + PageAlloc>(i: &Incoming<P>) -> Vec<(PhysAddr, Order)> {
    let mut v = Vec::new();
    let _ = i
        .for_each_block::<()>(&mut |pa, o| {
            v.push((pa, o));
            ControlFlow::Continue(())
        })
        .unwrap();
    v
}

pub fn incoming_ranges<P: PhysMem + PageAlloc>(i: &Incoming<P>) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let _ = i
        .for_each_range::<()>(&mut |pa, len| {
            v.push((pa.as_u64(), len));
            ControlFlow::Continue(())
        })
        .unwrap();
    v
}

/// The kernel's walk order: ascending key, i.e. larger orders first, then
/// ascending PA.
pub fn kernel_order(model: &BTreeMap<(u64, u32), ()>) -> Vec<(PhysAddr, Order)> {
    let mut v: Vec<(PhysAddr, Order)> = model.keys().map(|&(pa, o)| (PhysAddr::new(pa), order(o))).collect();
    v.sort_by_key(|&(pa, o)| kho_abi::RadixKey::encode(pa, o).unwrap());
    v
}

/// Coalesces blocks into ascending ranges (the reference for the range walk).
pub fn coalesce(blocks: &[(PhysAddr, Order)]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> =
        blocks.iter().map(|&(pa, o)| (pa.as_u64(), pa.as_u64() + (o.pages() * PAGE_SIZE as u64))).collect();
    spans.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some((_, le)) if s <= *le => *le = (*le).max(e),
            _ => out.push((s, e)),
        }
    }
    out.into_iter().map(|(s, e)| (s, e - s)).collect()
}

/// A page of RAM outside the scratch areas, `n` pages above the base.
pub fn page(m: &Machine, n: u64) -> PhysAddr {
    PhysAddr::new(m.ram_base().as_u64() + n * PAGE_SIZE as u64)
}

pub fn scratch_overlaps(scratch: &[KhoScratch], pa: PhysAddr, len: u64) -> bool {
    scratch.iter().any(|s| s.overlaps(pa, len))
}

/// Runs kernel A's `build` on a fresh machine, kexecs, and imports in
/// kernel B. Returns the next machine and the kho_data.
pub fn handover(m: Machine, build: impl FnOnce(&Machine) -> KhoData) -> (Machine, KhoData) {
    let data = build(&m);
    (m.kexec(data), data)
}
