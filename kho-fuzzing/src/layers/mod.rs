//! The payload layers under arbitrary changes to their pages: the bodies
//! of the `luo_restore`, `memfd_restore`, `memblock_restore`,
//! `kexec_meta_restore` and `selftest_restore` fuzz targets, shared with
//! the corpus replay test (`kho-fuzzing/tests/layers.rs`).
//!
//! Each harness lays a valid handover out with a layer's writer, lets the
//! input overwrite bytes of the preserved pages, kexecs, and checks what
//! every layer reader promises (see [`check`]).
//!
//! Input after the harness's own prefix: records
//! `[block, offset lo, offset hi, len, len bytes]`. `block` picks a
//! preserved block (modulo their number), the offset is a byte offset into
//! it (modulo its size), and the bytes are written there (clipped to the
//! block). A `len` of 0xff writes instead the 8-byte PA of block
//! `next byte` (modulo their number), so the fuzzer can build links,
//! cycles and sharing between the layer's own pages.

pub mod kexec_meta;
pub mod luo;
pub mod memblock;
pub mod memfd;
pub mod selftest;

use std::collections::BTreeSet;

use kho_abi::{KhoData, Order, PAGE_SIZE, PhysAddr, WithTracker};
use kho_sim::{Machine, MachineConfig, ModelTracker};

use crate::{Leased, Machines};

/// The platform a harness restores through.
pub type Platform<'a> = WithTracker<'a, Machine, ModelTracker>;

/// A small machine: 2 MiB, largest order 10 (small, so that setting it up
/// stays cheap under coverage instrumentation).
pub fn machine(ms: &mut Machines) -> Leased<'_> {
    machine_of(ms, 2 << 20)
}

/// A machine of `bytes` of RAM, largest order 10, for a harness whose
/// writer needs less than [`machine`] gives.
pub fn machine_of(ms: &mut Machines, bytes: u64) -> Leased<'_> {
    ms.lease(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, bytes))
}

/// Applies the records of `data` to `blocks` (the layer's preserved
/// blocks, in an order the harness chooses: its own metadata first makes
/// seeds easy to aim).
pub fn mutate(m: &Machine, blocks: &[(PhysAddr, Order)], mut data: &[u8]) {
    if blocks.is_empty() {
        return;
    }
    while data.len() >= 4 {
        let (pa, order) = blocks[usize::from(data[0]) % blocks.len()];
        let size = order.pages() * PAGE_SIZE as u64;
        let off = u64::from(u16::from_le_bytes([data[1], data[2]])) % size;
        let len = data[3];
        data = &data[4..];
        let bytes: Vec<u8> = if len == 0xff {
            let Some((&k, rest)) = data.split_first() else { return };
            data = rest;
            blocks[usize::from(k) % blocks.len()].0.as_u64().to_ne_bytes().to_vec()
        } else {
            let n = usize::from(len).min(data.len());
            let (b, rest) = data.split_at(n);
            data = rest;
            b.to_vec()
        };
        let n = (bytes.len() as u64).min(size - off) as usize;
        m.write(PhysAddr::new(pa.as_u64() + off), &bytes[..n]).expect("inside a preserved block");
    }
}

/// Kexecs: the next machine, booted (unpreserved pages poisoned), and its
/// incoming tracker.
pub fn kexec<'a>(m: Leased<'a>, t: &ModelTracker) -> (Leased<'a>, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    (m2, ModelTracker::incoming(blocks))
}

/// Checks a reader's promises on one handover:
/// - `inspect` leaves nothing claimed;
/// - an error of `inspect` is the error of `restore`, and a failed
///   `restore` leaves nothing claimed;
/// - a successful `restore` decodes what `inspect` decoded (through `view`)
///   and claims exactly the blocks `owned` lists, each of them preserved.
///
/// `inspect_may_pass` allows `restore` to fail where `inspect` succeeds (a
/// reader that reports, rather than refuses, in inspection).
/// Returns whether `restore` succeeded.
pub fn check<R, T, E>(
    t: &ModelTracker,
    p: &Platform<'_>,
    restore: impl Fn(&Platform<'_>) -> Result<R, E>,
    inspect: impl Fn(&Platform<'_>) -> Result<T, E>,
    view: impl Fn(&R) -> T,
    owned: impl Fn(&R) -> Vec<(PhysAddr, Order)>,
    inspect_may_pass: bool,
) -> bool
where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let seen = inspect(p);
    assert!(t.claimed().is_empty(), "inspect left {:?} claimed", t.claimed());
    match restore(p) {
        Err(e) => {
            assert!(t.claimed().is_empty(), "failed restore ({e:?}) left {:?} claimed", t.claimed());
            match seen {
                Err(s) => assert_eq!(s, e, "inspect and restore disagree"),
                Ok(v) => assert!(inspect_may_pass, "inspect passed ({v:?}), restore failed ({e:?})"),
            }
            false
        }
        Ok(r) => {
            assert_eq!(seen.as_ref().ok(), Some(&view(&r)), "inspect and restore disagree");
            let claimed: BTreeSet<(PhysAddr, Order)> = t.claimed().into_iter().collect();
            let listed: BTreeSet<(PhysAddr, Order)> = owned(&r).into_iter().collect();
            assert_eq!(claimed, listed, "restore claimed other blocks than it reports");
            let preserved: BTreeSet<(PhysAddr, Order)> = t.blocks().into_iter().collect();
            assert!(listed.is_subset(&preserved));
            true
        }
    }
}
