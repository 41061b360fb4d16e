//! Byte compatibility with the kernel's block ABI, in LUO's two shapes:
//! 80-byte session entries (51 per block) and 64-byte file entries (63 per
//! block). Chains we write are checked byte by byte, and chains written by
//! hand the way the kernel lays them out restore to the same entries.

mod common;

use common::{PAGE, machine, page, walk};
use kho_abi::{PAGE_SIZE, PhysAddr, WithTracker};
use kho_block::{BlockSet, RawBlockSet, RestoredRawBlockSet};
use kho_sim::{Machine, ModelTracker};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The shape of a LUO session entry: 80 bytes, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct SessionSer {
    name: [u8; 64],
    files_pa: u64,
    count: u64,
}

/// The shape of a LUO file entry: 64 bytes, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct FileSer {
    compatible: [u8; 48],
    data: u64,
    token: u64,
}

const _: () = assert!(size_of::<SessionSer>() == 80 && size_of::<FileSer>() == 64);

fn session(i: u64) -> SessionSer {
    let mut name = [0u8; 64];
    let s = format!("session-{i}");
    name[..s.len()].copy_from_slice(s.as_bytes());
    SessionSer { name, files_pa: 0x2_0000_0000 + i * PAGE, count: i % 7 }
}

fn file(i: u64) -> FileSer {
    let mut compatible = [0u8; 48];
    compatible[..8].copy_from_slice(b"memfd-v2");
    FileSer { compatible, data: 0xdead_0000 + i, token: i }
}

fn page_bytes(m: &Machine, pa: PhysAddr) -> Vec<u8> {
    let mut b = vec![0u8; PAGE_SIZE];
    m.read(pa, &mut b).unwrap();
    b
}

/// Checks every block of a chain byte for byte: header, packed entries,
/// zeros after the last entry.
fn check_layout<T: IntoBytes + Immutable>(m: &Machine, head: PhysAddr, entries: &[T], per_block: usize) {
    let size = size_of::<T>();
    let blocks = walk(m, head, 100);
    assert_eq!(blocks.len(), entries.len().div_ceil(per_block));
    for (k, (pa, _)) in blocks.iter().enumerate() {
        let bytes = page_bytes(m, *pa);
        let chunk = &entries[k * per_block..((k + 1) * per_block).min(entries.len())];
        let next = blocks.get(k + 1).map_or(0, |b| b.0.as_u64());
        assert_eq!(&bytes[0..8], &next.to_le_bytes(), "block {k} next");
        assert_eq!(&bytes[8..16], &(chunk.len() as u64).to_le_bytes(), "block {k} count");
        for (i, e) in chunk.iter().enumerate() {
            assert_eq!(&bytes[16 + i * size..16 + (i + 1) * size], e.as_bytes(), "block {k} entry {i}");
        }
        assert!(bytes[16 + size_of_val(chunk)..].iter().all(|&b| b == 0), "block {k} tail");
    }
}

#[test]
fn session_chain_bytes() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<SessionSer>::new();
    assert_eq!(set.entries_per_block(), 51);
    let entries: Vec<_> = (0..120).map(session).collect();
    set.grow(&p, entries.len()).unwrap();
    assert_eq!(set.blocks(), 3);
    let mut w = set.writer(&p);
    for e in &entries {
        w.push(e).unwrap();
    }
    check_layout(&m, set.head(), &entries, 51);
    // 51 * 80 = 4080: a full session block has no tail at all.
    let first = page_bytes(&m, set.head());
    assert_eq!(&first[16 + 50 * 80..], session(50).as_bytes());
}

#[test]
fn file_chain_bytes() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<FileSer>::new();
    assert_eq!(set.entries_per_block(), 63);
    let entries: Vec<_> = (0..130).map(file).collect();
    set.grow(&p, entries.len()).unwrap();
    set.writer(&p).extend(&entries).unwrap();
    check_layout(&m, set.head(), &entries, 63);
    // The same bytes through the raw form.
    let mut raw = RawBlockSet::new(64).unwrap();
    raw.grow(&p, 130).unwrap();
    raw.writer(&p).extend(entries.as_bytes()).unwrap();
    check_layout(&m, raw.head(), &entries, 63);
}

#[test]
fn counts_are_current_after_every_entry() {
    // No finalize: after each push the chain in memory is exactly the
    // entries so far.
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<FileSer>::new();
    set.grow(&p, 200).unwrap();
    let entries: Vec<_> = (0..140).map(file).collect();
    for (i, e) in entries.iter().enumerate() {
        set.writer(&p).push(e).unwrap();
        let counts: Vec<u64> = walk(&m, set.head(), 10).iter().map(|b| b.1).collect();
        let n = i as u64 + 1;
        let want: Vec<u64> = (0..n.div_ceil(63)).map(|k| (n - k * 63).min(63)).collect();
        assert_eq!(counts, want, "after entry {i}");
    }
    check_layout(&m, set.head(), &entries, 63);
}

#[test]
fn a_chain_laid_out_by_hand_restores() {
    // Blocks in descending addresses with partly used blocks, as nothing in
    // the ABI requires ascending PAs or full blocks.
    let m = machine();
    let sessions: Vec<_> = (0..60).map(session).collect();
    let layout = [(9u64, 0..20usize), (4, 20..51), (7, 51..60)];
    for (k, (pg, range)) in layout.iter().enumerate() {
        let mut bytes = vec![0u8; PAGE_SIZE];
        let next = layout.get(k + 1).map_or(0, |(n, _)| page(&m, *n).as_u64());
        bytes[0..8].copy_from_slice(&next.to_le_bytes());
        bytes[8..16].copy_from_slice(&(range.len() as u64).to_le_bytes());
        bytes[16..16 + range.len() * 80].copy_from_slice(sessions[range.clone()].as_bytes());
        m.write(page(&m, *pg), &bytes).unwrap();
    }
    let t = ModelTracker::incoming(layout.iter().map(|(pg, _)| (page(&m, *pg), kho_abi::Order::ZERO)).collect());
    let p = WithTracker::new(&m, &t);
    let set = BlockSet::<SessionSer>::restore(&p, page(&m, 9)).unwrap();
    assert_eq!((set.len(), set.blocks()), (60, 3));
    let back: Vec<SessionSer> = set.iter(&p).collect::<Result<_, _>>().unwrap();
    assert_eq!(back, sessions);
    let raw = RestoredRawBlockSet::restore(&p, PhysAddr::NULL, 80).unwrap();
    assert!(raw.is_empty());
    set.unclaim(&p);
}
