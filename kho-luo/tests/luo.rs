//! LUO state carried across a simulated kexec: round trips, the bytes the
//! writer leaves, and every fault a reader must refuse, each leaving
//! nothing claimed.

use kho_abi::{KhoData, PAGE_SIZE, PhysAddr, WithTracker};
use kho_block::{BlockError, Fault as ChainFault};
use kho_luo::abi::{FileSer, FlbHeader, LuoSer, SessionSer};
use kho_luo::{Fault, LuoError, LuoWriter, inspect, restore};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use zerocopy::{FromBytes, IntoBytes};

const PAGE: u64 = PAGE_SIZE as u64;

/// A small machine (32 MiB), so the poisoning at boot stays cheap.
fn machine() -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, 32 << 20)).unwrap()
}

fn handover(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    (m2, ModelTracker::incoming(blocks))
}

fn read<T: FromBytes + IntoBytes>(m: &Machine, pa: u64) -> T {
    let mut v = T::new_zeroed();
    m.read(PhysAddr::new(pa), v.as_mut_bytes()).unwrap();
    v
}

fn write<T: IntoBytes + zerocopy::Immutable>(m: &Machine, pa: u64, v: &T) {
    m.write(PhysAddr::new(pa), v.as_bytes()).unwrap();
}

/// A kernel A with `sessions` sessions, session `i` holding `files(i)`
/// memfd files with tokens `100 * i + j`, serialized for reboot.
fn kernel_a(sessions: usize, files: impl Fn(usize) -> usize) -> (Machine, ModelTracker, LuoWriter) {
    let m = machine();
    let t = ModelTracker::new();
    let mut w = {
        let p = WithTracker::new(&m, &t);
        let mut w = LuoWriter::new(&p, 1).unwrap();
        for i in 0..sessions {
            let s = w.create_session(&p, format!("session-{i}").as_bytes()).unwrap();
            for j in 0..files(i) {
                w.preserve_file(&p, s, "memfd-v2", 0x1000 * (j as u64 + 1), (100 * i + j) as u64).unwrap();
            }
        }
        w.add_flb("iommu", 0xabc, 2).unwrap();
        w
    };
    w.serialize(&WithTracker::new(&m, &t)).unwrap();
    (m, t, w)
}

/// Restores with a fault in place and checks the error and that nothing
/// stays claimed.
fn refuse(m: Machine, t: &ModelTracker, w: &LuoWriter) -> LuoError {
    let (m2, t2) = handover(m, t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, w.blob(), LuoWriter::BLOB_SIZE).unwrap_err();
    assert!(t2.claimed().is_empty(), "{e}: left {:?} claimed", t2.claimed());
    assert_eq!(inspect(&p2, w.blob(), LuoWriter::BLOB_SIZE).unwrap_err(), e);
    assert!(t2.claimed().is_empty());
    e
}

fn blob(m: &Machine, w: &LuoWriter) -> LuoSer {
    read(m, w.blob().as_u64())
}

/// Address of entry `i` of the first block of a chain of `size`-byte
/// entries.
fn entry(head: u64, size: u64, i: u64) -> u64 {
    head + 16 + size * i
}

#[test]
fn sessions_and_files_round_trip() {
    // 60 sessions need two session blocks; session 3's 70 files two file
    // blocks; session 5 has none.
    let files = |i: usize| match i {
        3 => 70,
        5 => 0,
        _ => i % 4 + 1,
    };
    let (m, t, w) = kernel_a(60, files);
    let preserved = t.blocks().len();
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);

    let seen = inspect(&p2, w.blob(), LuoWriter::BLOB_SIZE).unwrap();
    assert!(t2.claimed().is_empty(), "inspect gives every claim back");
    let r = restore(&p2, w.blob(), LuoWriter::BLOB_SIZE).unwrap();
    assert_eq!(r.luo(), &seen);
    let luo = r.luo();
    assert_eq!(luo.liveupdate_num, 1);
    assert_eq!(luo.sessions.len(), 60);
    assert_eq!(luo.session_blocks.len(), 2);
    for (i, s) in luo.sessions.iter().enumerate() {
        assert_eq!(s.name, format!("session-{i}"));
        assert_eq!(s.files.len(), files(i), "session {i}");
        assert_eq!(s.file_blocks.len(), files(i).div_ceil(63));
        assert_eq!(s.files_pa.is_null(), files(i) == 0);
        for (j, f) in s.files.iter().enumerate() {
            assert_eq!(
                (f.compatible.as_str(), f.data, f.token),
                ("memfd-v2", 0x1000 * (j as u64 + 1), (100 * i + j) as u64)
            );
        }
    }
    assert_eq!(luo.file_count(), (0..60).map(files).sum::<usize>());
    assert_eq!(luo.session("session-3").unwrap().file(369).unwrap().data, 0x1000 * 70);
    let flbs = luo.flbs.as_ref().unwrap();
    assert_eq!((flbs.pa, flbs.pgcnt, flbs.entries.len()), (w.flbs(), 1, 1));
    assert_eq!((flbs.entries[0].name.as_str(), flbs.entries[0].data, flbs.entries[0].count), ("iommu", 0xabc, 2));
    // Every preserved page is the LUO state's and is now claimed.
    assert_eq!(t2.claimed().len(), preserved);
    assert!(t2.unclaimed().is_empty());
    let back = r.free(&p2).unwrap();
    assert_eq!(back, seen);
    assert_eq!(m2.reserved_pages(), 0);
}

#[test]
fn the_writer_leaves_the_kernels_bytes() {
    let (m, _t, w) = kernel_a(2, |i| i + 1);
    let b = blob(&m, &w);
    let mut raw = [0u8; 32];
    m.read(w.blob(), &mut raw).unwrap();
    assert_eq!(&raw[..8], b"luo-v5\0\0");
    assert_eq!(raw[8..16], 1u64.to_ne_bytes());
    assert_eq!(raw[24..32], w.flbs().as_u64().to_ne_bytes());
    let head = b.sessions_pa;
    assert!(head != 0 && head.is_multiple_of(PAGE));
    // Session block: next 0, count 2, then the entries.
    let mut hdr = [0u8; 16];
    m.read(PhysAddr::new(head), &mut hdr).unwrap();
    assert_eq!(hdr[..8], 0u64.to_ne_bytes());
    assert_eq!(hdr[8..], 2u64.to_ne_bytes());
    let s1: SessionSer = read(&m, entry(head, 80, 1));
    assert_eq!(&s1.name[..10], b"session-1\0");
    assert!(s1.name[10..].iter().all(|&b| b == 0));
    assert_eq!({ s1.count }, 2);
    let f: FileSer = read(&m, entry(s1.files, 64, 1));
    assert_eq!(&f.compatible[..9], b"memfd-v2\0");
    assert!(f.compatible[9..].iter().all(|&b| b == 0));
    assert_eq!(({ f.data }, { f.token }), (0x2000, 101));
    let flb: FlbHeader = read(&m, w.flbs().as_u64());
    assert_eq!(({ flb.pgcnt }, { flb.count }), (1, 1));
    let mut e = [0u8; 64];
    m.read(PhysAddr::new(w.flbs().as_u64() + 16), &mut e).unwrap();
    assert_eq!(&e[..6], b"iommu\0");
    assert_eq!(e[48..56], 0xabcu64.to_ne_bytes());
    assert_eq!(e[56..64], 2u64.to_ne_bytes());
}

#[test]
fn a_live_kernel_has_no_sessions_yet() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut w = LuoWriter::new(&p, 4).unwrap();
    let s = w.create_session(&p, b"vm").unwrap();
    w.preserve_file(&p, s, "memfd-v2", 0x5000, 1).unwrap();
    assert_eq!({ blob(&m, &w).sessions_pa }, 0, "sessions are written at reboot");
    // Room is reserved (blob, FLB, one session block, one file block).
    assert_eq!(t.blocks().len(), 4);
    let (m2, t2) = handover(m, &t);
    let luo = inspect(&WithTracker::new(&m2, &t2), w.blob(), 32).unwrap();
    assert_eq!((luo.liveupdate_num, luo.sessions.len()), (4, 0));
    assert!(luo.sessions_pa.is_null());
}

#[test]
fn writer_refuses_bad_input() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut w = LuoWriter::new(&p, 1).unwrap();
    let s = w.create_session(&p, b"a").unwrap();
    assert!(matches!(w.create_session(&p, b"a"), Err(LuoError::Exists { .. })));
    assert!(matches!(w.create_session(&p, b""), Err(LuoError::BadName { .. })));
    assert!(matches!(w.create_session(&p, &[b'x'; 64]), Err(LuoError::BadName { .. })));
    w.create_session(&p, &[b'x'; 63]).unwrap();
    w.preserve_file(&p, s, "memfd-v2", 1, 9).unwrap();
    assert!(matches!(w.preserve_file(&p, s, "memfd-v2", 1, 9), Err(LuoError::Exists { .. })));
    assert!(matches!(w.preserve_file(&p, s, &"c".repeat(48), 1, 10), Err(LuoError::BadName { .. })));
    assert!(matches!(w.add_flb("", 0, 0), Err(LuoError::BadName { .. })));
}

#[test]
fn wrong_compatible_is_refused() {
    for bad in [*b"luo-v4\0\0", *b"luo-v5\0x", *b"luo-v55\0", [0; 8]] {
        let (m, t, w) = kernel_a(1, |_| 1);
        m.write(w.blob(), &bad).unwrap();
        assert_eq!(refuse(m, &t, &w), LuoError::Compatible { found: bad });
    }
}

#[test]
fn blob_faults() {
    let (m, t, w) = kernel_a(1, |_| 1);
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, w.blob(), 31).unwrap_err();
    assert!(
        matches!(e, LuoError::Blob { field: "blob-size", fault: Fault::TooShort { len: 31, need: 32 }, .. }),
        "{e}"
    );
    let off = PhysAddr::new(w.blob().as_u64() + 8);
    assert!(matches!(restore(&p2, off, 32).unwrap_err(), LuoError::Blob { fault: Fault::Misaligned(_), .. }));
    let outside = PhysAddr::new(0x1000);
    assert!(matches!(restore(&p2, outside, 32).unwrap_err(), LuoError::Blob { fault: Fault::NotPreserved(_), .. }));
    // A page that is RAM but was not preserved.
    let foreign = PhysAddr::new(m2.ram_end().as_u64() - PAGE);
    assert!(matches!(restore(&p2, foreign, 32).unwrap_err(), LuoError::Blob { fault: Fault::NotPreserved(_), .. }));
    assert!(t2.claimed().is_empty());
}

#[test]
fn session_name_faults() {
    for (bytes, fault) in [([b'n'; 64], Fault::Unterminated), ([0; 64], Fault::Empty)] {
        let (m, t, w) = kernel_a(3, |_| 1);
        let at = entry(blob(&m, &w).sessions_pa, 80, 1);
        m.write(PhysAddr::new(at), &bytes).unwrap();
        match refuse(m, &t, &w) {
            LuoError::Session { at, field: "name", fault: f } => {
                assert_eq!((at.index, f), (1, fault));
            }
            e => panic!("{e}"),
        }
    }
    let (m, t, w) = kernel_a(3, |_| 1);
    let at = entry(blob(&m, &w).sessions_pa, 80, 2);
    m.write(PhysAddr::new(at), b"session-0\0").unwrap();
    let e = refuse(m, &t, &w);
    assert!(
        matches!(&e, LuoError::Session { at, field: "name", fault: Fault::Duplicate { first: 0 } } if at.index == 2 && at.name == "session-0"),
        "{e}"
    );
    assert!(e.to_string().contains("session 2 \"session-0\""), "{e}");
}

#[test]
fn file_count_must_match_the_chain() {
    for (session, count) in [(1usize, 3u64), (1, 1), (0, 0), (2, 1)] {
        // Session 2 has no files: a count of 1 with files = 0 disagrees too.
        let (m, t, w) = kernel_a(3, |i| if i == 2 { 0 } else { 2 });
        let at = entry(blob(&m, &w).sessions_pa, 80, session as u64) + 72;
        write(&m, at, &count);
        match refuse(m, &t, &w) {
            LuoError::Session { at, field: "count", fault: Fault::CountMismatch { count: c, chain } } => {
                assert_eq!((at.index, c, chain), (session, count, if session == 2 { 0 } else { 2 }));
            }
            e => panic!("{e}"),
        }
    }
}

#[test]
fn session_chain_faults() {
    // A cycle: the single session block links to itself.
    let (m, t, w) = kernel_a(2, |_| 1);
    let head = blob(&m, &w).sessions_pa;
    write(&m, head, &head);
    let e = refuse(m, &t, &w);
    assert!(
        matches!(e, LuoError::Sessions(BlockError::Chain(c)) if matches!(c.fault, ChainFault::Link(kho_abi::chain::ChainFault::Cycle { first: 0 }))),
        "{e}"
    );
    // A hostile count.
    let (m, t, w) = kernel_a(2, |_| 1);
    let head = blob(&m, &w).sessions_pa;
    write(&m, head + 8, &u64::MAX);
    let e = refuse(m, &t, &w);
    assert!(
        matches!(e, LuoError::Sessions(BlockError::Chain(c)) if matches!(c.fault, ChainFault::CountTooLarge { .. })),
        "{e}"
    );
    // sessions_pa outside RAM and into a page nobody preserved.
    for pa in [0x1000u64, 0x7000_0000_0000] {
        let (m, t, w) = kernel_a(2, |_| 1);
        write(&m, w.blob().as_u64() + 16, &pa);
        assert!(matches!(refuse(m, &t, &w), LuoError::Sessions(_)));
    }
}

#[test]
fn file_chain_faults() {
    // A cycle through two file blocks of session 0 (70 files).
    let (m, t, w) = kernel_a(2, |i| if i == 0 { 70 } else { 1 });
    let s0: SessionSer = read(&m, entry(blob(&m, &w).sessions_pa, 80, 0));
    let second: u64 = read(&m, s0.files);
    write(&m, second, &{ s0.files });
    let e = refuse(m, &t, &w);
    match &e {
        LuoError::Files { at, source: BlockError::Chain(c) } => {
            assert_eq!(at.index, 0);
            assert!(matches!(c.fault, ChainFault::Link(kho_abi::chain::ChainFault::Cycle { first: 0 })), "{e}");
        }
        e => panic!("{e}"),
    }
    assert!(e.to_string().starts_with("session 0 \"session-0\", file chain: block 2"), "{e}");
    // The files of session 1 pointing at session 0's chain: claimed twice.
    let (m, t, w) = kernel_a(2, |_| 1);
    let head = blob(&m, &w).sessions_pa;
    let s0: SessionSer = read(&m, entry(head, 80, 0));
    write(&m, entry(head, 80, 1) + 64, &{ s0.files });
    assert!(matches!(refuse(m, &t, &w), LuoError::Files { at, .. } if at.index == 1));
    // Files outside RAM.
    let (m, t, w) = kernel_a(2, |_| 1);
    let head = blob(&m, &w).sessions_pa;
    write(&m, entry(head, 80, 1) + 64, &0xdead_0000_0000u64);
    assert!(matches!(refuse(m, &t, &w), LuoError::Files { at, .. } if at.index == 1));
}

#[test]
fn file_entry_faults() {
    let (m, t, w) = kernel_a(2, |_| 3);
    let s1: SessionSer = read(&m, entry(blob(&m, &w).sessions_pa, 80, 1));
    m.write(PhysAddr::new(entry(s1.files, 64, 2)), &[b'c'; 48]).unwrap();
    let e = refuse(m, &t, &w);
    assert!(
        matches!(&e, LuoError::File { at, index: 2, token: 102, field: "compatible", fault: Fault::Unterminated } if at.index == 1),
        "{e}"
    );

    let (m, t, w) = kernel_a(2, |_| 3);
    let s1: SessionSer = read(&m, entry(blob(&m, &w).sessions_pa, 80, 1));
    m.write(PhysAddr::new(entry(s1.files, 64, 0)), &[0u8; 48]).unwrap();
    assert!(matches!(refuse(m, &t, &w), LuoError::File { field: "compatible", fault: Fault::Empty, .. }));

    let (m, t, w) = kernel_a(2, |_| 3);
    let s1: SessionSer = read(&m, entry(blob(&m, &w).sessions_pa, 80, 1));
    write(&m, entry(s1.files, 64, 2) + 56, &100u64);
    let e = refuse(m, &t, &w);
    assert!(
        matches!(&e, LuoError::File { index: 2, token: 100, field: "token", fault: Fault::Duplicate { first: 0 }, .. }),
        "{e}"
    );
    // Equal tokens in different sessions are fine.
    let (m, t, w) = kernel_a(2, |_| 3);
    let s1: SessionSer = read(&m, entry(blob(&m, &w).sessions_pa, 80, 1));
    write(&m, entry(s1.files, 64, 0) + 56, &0u64);
    let (m2, t2) = handover(m, &t);
    assert!(restore(&WithTracker::new(&m2, &t2), w.blob(), 32).is_ok());
}

#[test]
fn unknown_handlers_are_listed_not_refused() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut w = LuoWriter::new(&p, 2).unwrap();
    let s = w.create_session(&p, b"x").unwrap();
    w.preserve_file(&p, s, "vfio-v9", 77, 1).unwrap();
    w.serialize(&p).unwrap();
    let (m2, t2) = handover(m, &t);
    let luo = inspect(&WithTracker::new(&m2, &t2), w.blob(), 32).unwrap();
    assert_eq!(luo.sessions[0].files[0].compatible, "vfio-v9");
}

#[test]
fn flb_faults() {
    let cases: [(&str, u64, u64); 4] =
        [("pgcnt", 0, 0), ("pgcnt", 1 << 20, 0), ("count", 1, 64), ("count", 1, u64::MAX)];
    for (field, pgcnt, count) in cases {
        let (m, t, w) = kernel_a(1, |_| 1);
        write(&m, w.flbs().as_u64(), &FlbHeader { pgcnt, count });
        let e = refuse(m, &t, &w);
        assert!(matches!(&e, LuoError::Flbs { field: f, fault: Fault::OutOfRange { .. }, .. } if *f == field), "{e}");
    }
    // A region of 2 pages where one was preserved: the order-1 claim fails.
    let (m, t, w) = kernel_a(1, |_| 1);
    write(&m, w.flbs().as_u64(), &FlbHeader { pgcnt: 2, count: 0 });
    assert!(matches!(refuse(m, &t, &w), LuoError::Flbs { field: "flbs_pa", fault: Fault::NotPreserved(_), .. }));
    // Unterminated and duplicate names.
    let (m, t, w) = kernel_a(1, |_| 1);
    m.write(PhysAddr::new(w.flbs().as_u64() + 16), &[b'f'; 48]).unwrap();
    assert!(matches!(refuse(m, &t, &w), LuoError::Flb { index: 0, field: "name", fault: Fault::Unterminated, .. }));
    let (m, t, w) = kernel_a(1, |_| 1);
    write(&m, w.flbs().as_u64(), &FlbHeader { pgcnt: 1, count: 2 });
    m.write(PhysAddr::new(w.flbs().as_u64() + 16 + 64), b"iommu\0").unwrap();
    assert!(matches!(refuse(m, &t, &w), LuoError::Flb { index: 1, fault: Fault::Duplicate { first: 0 }, .. }));
    // flbs_pa misaligned, and pointing at an unpreserved page.
    let (m, t, w) = kernel_a(1, |_| 1);
    write(&m, w.blob().as_u64() + 24, &(w.flbs().as_u64() + 8));
    assert!(matches!(refuse(m, &t, &w), LuoError::Flbs { fault: Fault::Misaligned(_), .. }));
    let (m, t, w) = kernel_a(1, |_| 1);
    let spare = m.ram_end().as_u64() - 4 * PAGE;
    write(&m, w.blob().as_u64() + 24, &spare);
    let (m2, t2) = handover(m, &t);
    // Written after boot, which poisoned the unpreserved page.
    write(&m2, spare, &FlbHeader { pgcnt: 1, count: 0 });
    let e = restore(&WithTracker::new(&m2, &t2), w.blob(), 32).unwrap_err();
    assert!(t2.claimed().is_empty());
    assert!(matches!(e, LuoError::Flbs { fault: Fault::NotPreserved(_), .. }), "{e}");
}

#[test]
fn through_the_real_tracker() {
    use kho_track::{Incoming, Tracker, TrackerOptions};
    let m = machine();
    let (data, blob) = {
        let mut tracker = Tracker::new(&m, m.scratch(), TrackerOptions::default()).unwrap();
        let p = WithTracker::new(&m, &tracker);
        let mut w = LuoWriter::new(&p, 1).unwrap();
        let s = w.create_session(&p, b"guest").unwrap();
        for tok in 0..5 {
            w.preserve_file(&p, s, "memfd-v2", 0x9000 + tok, tok).unwrap();
        }
        w.serialize(&p).unwrap();
        tracker.add_subtree(kho_luo::LUO_SUBTREE, w.blob(), LuoWriter::BLOB_SIZE).unwrap();
        (tracker.finish().unwrap(), w.blob())
    };
    let m2 = m.kexec(data);
    let inc = Incoming::import(&m2, &data).unwrap();
    let reserved = inc.reserved_blocks().unwrap();
    m2.boot_done(&mut reserved.iter().copied()).unwrap();
    let sub = inc.subtree("LUO").unwrap();
    assert_eq!((sub.pa, sub.size), (blob, Some(32)));
    let p2 = WithTracker::new(&m2, &inc);
    let before = inc.unclaimed().unwrap();
    let luo = inspect(&p2, sub.pa, sub.size.unwrap()).unwrap();
    assert_eq!(inc.unclaimed().unwrap(), before, "inspect leaves the tree as it was");
    assert_eq!(luo.sessions[0].files.iter().map(|f| f.token).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let r = restore(&p2, sub.pa, 32).unwrap();
    assert!(inc.unclaimed().unwrap().is_empty(), "the LUO state is every preserved page");
    r.free(&p2).unwrap();
    inc.finish();
}

#[test]
fn the_blob_matches_the_kernels_bytes() {
    // A live 7.2.13 kernel's LUO blob (read from its debugfs in the lab):
    // compatible, liveupdate number 1, sessions_pa 0, then flbs_pa.
    let kernel: [u8; 24] = [b'l', b'u', b'o', b'-', b'v', b'5', 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let m = machine();
    let t = ModelTracker::new();
    let w = LuoWriter::new(&WithTracker::new(&m, &t), 1).unwrap();
    let mut mine = [0u8; 32];
    m.read(w.blob(), &mut mine).unwrap();
    assert_eq!(mine[..24], kernel);
    assert_eq!(mine[24..], w.flbs().as_u64().to_ne_bytes());
}
