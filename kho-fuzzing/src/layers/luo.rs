//! The `luo_restore` fuzz target's harness, shared with the test replaying
//! `fuzz/corpus/luo_restore`. Byte 0 shapes the LUO state kernel A writes
//! (sessions, files in the first and last session, at most two in the
//! others, FLBs); the rest overwrites its pages (see [`super`]).

use kho_abi::{Order, PhysAddr, WithTracker};
use kho_luo::{Luo, LuoWriter, inspect, restore};
use kho_sim::ModelTracker;

use crate::Machines;

/// Runs one input; panics only if the reader breaks a promise. Returns
/// whether the restore succeeded.
pub fn run(ms: &mut Machines, data: &[u8]) -> bool {
    let shape = data.first().copied().unwrap_or(0);
    let m = super::machine_of(ms, 1 << 20); // room for every shape
    let t = ModelTracker::new();
    let blob = {
        let p = WithTracker::new(&*m, &t);
        let mut w = LuoWriter::new(&p, u64::from(shape >> 6)).expect("LUO writer");
        let sessions = [0, 1, 3, 52][usize::from(shape & 3)];
        let files = [0, 1, 2, 64][usize::from((shape >> 2) & 3)];
        for s in 0..sessions {
            let id = w.create_session(&p, format!("s{s}").as_bytes()).expect("session");
            // The full file count in the first and last sessions only: a
            // long file list and many session blocks both, at a fraction
            // of the cost of every session at full size.
            let files = if s == 0 || s + 1 == sessions { files } else { files.min(2) };
            for f in 0..files {
                w.preserve_file(&p, id, "memfd-v2", 0x1000 * f, f).expect("file");
            }
        }
        if shape & 0x10 != 0 {
            w.add_flb("iommu", 1, 2).expect("flb");
            w.add_flb("pci", 3, 4).expect("flb");
        }
        if shape & 0x20 == 0 {
            w.serialize(&p).expect("serialize");
        }
        w.blob()
    };
    super::mutate(&m, &t.blocks(), data.get(1..).unwrap_or(&[]));
    let (m2, t2) = super::kexec(m, &t);
    let p2 = WithTracker::new(&*m2, &t2);
    super::check(
        &t2,
        &p2,
        |p| restore(p, blob, LuoWriter::BLOB_SIZE),
        |p| inspect(p, blob, LuoWriter::BLOB_SIZE),
        |r| r.luo().clone(),
        |r| owned(r.luo()),
        false,
    )
}

/// Every block a restored LUO state holds.
fn owned(l: &Luo) -> Vec<(PhysAddr, Order)> {
    let mut out = vec![(l.blob, l.blob_order)];
    out.extend(l.session_blocks.iter().map(|&b| (b, Order::ZERO)));
    for s in &l.sessions {
        out.extend(s.file_blocks.iter().map(|&b| (b, Order::ZERO)));
    }
    if let Some(f) = &l.flbs {
        let order = if f.pgcnt <= 1 { 0 } else { 64 - (f.pgcnt - 1).leading_zeros() };
        out.push((f.pa, Order::new(u64::from(order), "flb").expect("order")));
    }
    out
}

/// Seed inputs: every shape unmutated, and a few classic corruptions.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..64u8).map(|s| vec![s]).collect();
    // Session block linking to itself (block 2 is the first session block
    // with shape 1: blob, FLB, session block, file block).
    out.push(vec![0x05, 2, 0, 0, 0xff, 2]);
    // A count of 0 in a session block header.
    out.push(vec![0x05, 2, 8, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    // An unterminated session name.
    let mut name = vec![0x05, 2, 16, 0, 64];
    name.extend([b'x'; 64]);
    out.push(name);
    out
}
