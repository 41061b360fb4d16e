//! The `memfd_restore` fuzz target's harness, shared with the test
//! replaying `fuzz/corpus/memfd_restore`. Byte 0 shapes the memfd kernel A
//! preserves (size, holes, a large folio); the rest overwrites its pages
//! (see [`super`]).

use kho_abi::{Order, PAGE_SIZE, PhysAddr, WithTracker};
use kho_memfd::{FolioSpec, Memfd, inspect, preserve, restore};
use kho_sim::ModelTracker;

use crate::Machines;

/// Runs one input; panics only if the reader breaks a promise. Returns
/// whether the restore succeeded.
pub fn run(ms: &mut Machines, data: &[u8]) -> bool {
    let shape = data.first().copied().unwrap_or(0);
    let m = super::machine(ms);
    let t = ModelTracker::new();
    let page = [0x5au8; PAGE_SIZE];
    // Up to 59 pages, or (for the four largest shapes, rarer because far
    // dearer) 300 to 315 pages: a two-page folio list. Every third page a
    // hole when bit 6 is set, an order-2 folio first when bit 7 is.
    let pages = match u64::from(shape & 0x3f) {
        n @ 60.. => n * 5,
        n => n,
    };
    let mut specs = Vec::new();
    let mut index = 0;
    if shape & 0x80 != 0 && pages >= 4 {
        specs.push(FolioSpec { index: 0, order: Order::new(2, "o").expect("order"), data: &page, flags: 3 });
        index = 4;
    }
    while index < pages {
        if shape & 0x40 == 0 || index % 3 != 0 {
            specs.push(FolioSpec { index, order: Order::ZERO, data: &page[..(index as usize % 4096)], flags: 1 });
        }
        index += 1;
    }
    let saved = preserve(&WithTracker::new(&*m, &t), pages * PAGE_SIZE as u64, 7, 0x3, &specs).expect("memfd");
    // Blocks in role order: descriptor, first list chunk, list pages, folios.
    let mut blocks = vec![(saved.desc, Order::ZERO)];
    if saved.ser.folios_first != 0 {
        blocks.push((PhysAddr::new(saved.ser.folios_first), Order::ZERO));
    }
    blocks.extend(saved.list_pages.iter().map(|&p| (p, Order::ZERO)));
    blocks.extend(saved.folios.iter().copied());
    super::mutate(&m, &blocks, data.get(1..).unwrap_or(&[]));
    let (m2, t2) = super::kexec(m, &t);
    let p2 = WithTracker::new(&*m2, &t2);
    if let Ok(memfd) = inspect(&p2, saved.desc) {
        // Reading a file the reader accepted never fails, holes included:
        // every segment, the bytes just before and after it, and the end.
        let mut buf = vec![0u8; 2 * PAGE_SIZE];
        let mut at = Vec::new();
        for (off, _, len) in memfd.segments() {
            at.extend([off.saturating_sub(PAGE_SIZE as u64), off, off + len.saturating_sub(1)]);
        }
        at.push(memfd.size.saturating_sub(1));
        for off in at {
            memfd.read_at(&p2, off.min(memfd.size), &mut buf).expect("read_at of an accepted memfd");
        }
    }
    super::check(
        &t2,
        &p2,
        |p| restore(p, saved.desc),
        |p| inspect(p, saved.desc),
        |r| r.memfd().clone(),
        |r| owned(r.memfd()),
        false,
    )
}

fn owned(m: &Memfd) -> Vec<(PhysAddr, Order)> {
    let mut out = vec![(m.desc, Order::ZERO)];
    out.extend(m.list_blocks.iter().map(|&b| (b, m.list_order)));
    out.extend(m.list_chunks.iter().map(|&c| (c, Order::ZERO)));
    out.extend(m.folios.iter().map(|f| (f.pa, f.order)));
    out
}

/// Seed inputs: shapes unmutated, and a few classic corruptions (block 0
/// is the lowest preserved block, not necessarily the descriptor).
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        [0u8, 1, 2, 10, 52, 60, 63, 0x41, 0x7f, 0x81, 0xc5, 0xff].iter().map(|&s| vec![s]).collect();
    // Blocks: 0 descriptor, 1 list chunk, 2 list page, 3.. folios.
    out.push(vec![10, 0, 16, 0, 1, 0x40]); // unknown seal
    out.push(vec![10, 0, 20, 0, 1, 0x01]); // unknown flag
    out.push(vec![10, 0, 24, 0, 1, 0xff]); // nr_folios above the list
    out.push(vec![10, 1, 0, 0, 0xff, 1]); // list chunk linking to itself
    out.push(vec![10, 2, 7, 0, 1, 0x40]); // unknown folio flag
    out.push(vec![10, 2, 16, 0, 0xff, 3]); // folio 1 = folio 0's pfn bits (a PA: not a pfn)
    out.push(vec![10, 2, 24, 0, 1, 0]); // folio 1 at index 0: not ascending
    out.push(vec![10, 2, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]); // pfn beyond RAM
    out
}
