//! The incoming side on a simulated machine: every way a previous kernel's
//! descriptor or chunks can be wrong, each with its specific error, and
//! that every failure leaves nothing claimed, nothing freed and nothing
//! allocated, so that the repaired area still restores afterwards.

mod common;

use common::*;
use kho_abi::chain::{ChainError, ChainFault, LinkField};
use kho_abi::{AbiError, Errno, KhoVmalloc, Order, PageAlloc, PhysAddr, Preserve, ToErrno, WithTracker};
use kho_sim::{Machine, ModelTracker};
use kho_vmalloc::{ChunkAt, EntryAt, VmallocError};

/// An area handed over to a booted next kernel, plus a spare preserved
/// page (never part of the area) for tests that need one.
struct Next {
    m: Machine,
    t: ModelTracker,
    d: KhoVmalloc,
    blocks: Vec<PhysAddr>,
    spare: PhysAddr,
}

fn area(n: usize, order: u64) -> Next {
    let m = machine();
    let blocks = scattered(&m, n, o(order), n as u64 + order);
    let (t, d) = preserve(&m, &blocks, o(order));
    let spare = m.alloc_pages(Order::ZERO).unwrap();
    t.preserve(spare, Order::ZERO).unwrap();
    let (m, t) = handover(m, &t);
    Next { m, t, d, blocks, spare }
}

impl Next {
    fn chunk(&self, i: usize) -> PhysAddr {
        chain(&self.m, &self.d)[i].0
    }

    fn at(&self, i: usize) -> ChunkAt {
        ChunkAt { index: i as u64, pa: self.chunk(i) }
    }

    fn entry_at(&self, chunk: usize, entry: usize) -> EntryAt {
        EntryAt { chunk: self.at(chunk), entry }
    }

    /// Restores `d`, which must fail; checks that nothing was claimed,
    /// freed or allocated, and returns the error.
    fn fails(&self, d: &KhoVmalloc) -> VmallocError {
        let reserved = self.m.reserved_pages();
        let mut seen = 0;
        let e = kho_vmalloc::restore(&WithTracker::new(&self.m, &self.t), d, |_| seen += 1).unwrap_err();
        assert_eq!(seen, 0, "{e}: blocks handed out");
        assert_eq!(self.t.claimed(), vec![], "{e}: left claimed");
        assert_eq!(self.m.reserved_pages(), reserved, "{e}: freed pages");
        assert_eq!(self.m.outstanding_pages(), 0, "{e}: allocated pages");
        e
    }

    /// The untouched area restores in full.
    fn restores(&self) {
        let (area, got) = restore(&self.m, &self.t, &self.d).unwrap();
        assert_eq!(got, self.blocks);
        assert_eq!(area.blocks as usize, self.blocks.len());
    }
}

#[test]
fn unknown_flags() {
    let a = area(3, 0);
    let e = a.fails(&KhoVmalloc { flags: 0x4 | 0x1, ..a.d });
    assert_eq!(e, VmallocError::Descriptor(AbiError::UnsupportedFlags { what: "kho_vmalloc.flags", flags: 5 }));
    assert_eq!(e.errno(), Errno::OpNotSupp);
    a.restores();
}

#[test]
fn order_above_the_platform_maximum() {
    let a = area(3, 0);
    let e = a.fails(&KhoVmalloc { order: 11, total_pages: 3 << 11, ..a.d });
    assert_eq!(e, VmallocError::Descriptor(AbiError::OrderTooLarge { what: "kho_vmalloc.order", order: 11, max: 10 }));
    assert_eq!(e.errno(), Errno::Range);
    let e = a.fails(&KhoVmalloc { order: u16::MAX, ..a.d });
    assert!(matches!(e, VmallocError::Descriptor(AbiError::OrderTooLarge { order: 65535, .. })));
    a.restores();
}

#[test]
fn descriptor_fields_that_disagree() {
    let a = area(4, 1);
    let e = a.fails(&KhoVmalloc { total_pages: 7, ..a.d });
    assert_eq!(e, VmallocError::Descriptor(AbiError::InvalidValue { what: "kho_vmalloc.total_pages", value: 7 }));
    let e = a.fails(&KhoVmalloc { total_pages: 0, ..a.d });
    assert!(matches!(e, VmallocError::Descriptor(AbiError::InvalidValue { .. })));
    let e = a.fails(&KhoVmalloc { first: a.d.first + 8, ..a.d });
    assert!(matches!(e, VmallocError::Descriptor(AbiError::Misaligned { what: "kho_vmalloc.first", .. })), "{e}");
    a.restores();
}

#[test]
fn misaligned_block() {
    let a = area(5, 2);
    let c = a.chunk(0);
    let pa = a.blocks[3].as_u64() + PAGE;
    set_entry(&a.m, c, 3, pa);
    let e = a.fails(&a.d);
    assert_eq!(e, VmallocError::BlockMisaligned { at: a.entry_at(0, 3), pa: PhysAddr::new(pa), order: 2 });
    assert_eq!(e.errno(), Errno::Inval);
    set_entry(&a.m, c, 3, a.blocks[3].as_u64());
    a.restores();
}

#[test]
fn more_blocks_than_total_pages() {
    let a = area(700, 0);
    let e = a.fails(&KhoVmalloc { total_pages: 699, ..a.d });
    assert_eq!(e, VmallocError::TooManyBlocks { at: a.entry_at(1, 699 - 511), expected: 699 });
    // Far fewer pages announced: the excess shows up in the first chunk,
    // long before the walk could run away.
    let e = a.fails(&KhoVmalloc { total_pages: 10, ..a.d });
    assert_eq!(e, VmallocError::TooManyBlocks { at: a.entry_at(0, 10), expected: 10 });
    a.restores();
}

#[test]
fn fewer_blocks_than_total_pages() {
    // The last chunk ends early: its zero entry comes before the total.
    let a = area(700, 0);
    let e = a.fails(&KhoVmalloc { total_pages: 701, ..a.d });
    assert_eq!(e, VmallocError::ZeroEntry { at: a.entry_at(1, 189), restored: 700, expected: 701 });
    a.restores();
    // The last chunk is full and the chain ends.
    let a = area(511, 0);
    let e = a.fails(&KhoVmalloc { total_pages: 512, ..a.d });
    assert_eq!(e, VmallocError::TooFewBlocks { restored: 511, expected: 512 });
    assert_eq!(e.errno(), Errno::Inval);
    a.restores();
}

#[test]
fn zero_entry_before_the_total() {
    let a = area(1022, 0);
    let c = a.chunk(0);
    set_entry(&a.m, c, 100, 0);
    let e = a.fails(&a.d);
    assert_eq!(e, VmallocError::ZeroEntry { at: a.entry_at(0, 100), restored: 100, expected: 1022 });
    set_entry(&a.m, c, 100, a.blocks[100].as_u64());
    a.restores();
}

#[test]
fn chain_cycles() {
    let a = area(1022, 0);
    let (c0, c1) = (a.chunk(0), a.chunk(1));
    // The second chunk leads back to the first.
    set_next(&a.m, c1, c0.as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 2,
            pa: c0,
            field: LinkField::Next,
            fault: ChainFault::Cycle { first: 0 }
        })
    );
    set_next(&a.m, c1, 0);
    // The first chunk leads to itself.
    set_next(&a.m, c0, c0.as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 1,
            pa: c0,
            field: LinkField::Next,
            fault: ChainFault::Cycle { first: 0 }
        })
    );
    assert_eq!(e.errno(), Errno::Inval);
    set_next(&a.m, c0, c1.as_u64());
    a.restores();
}

#[test]
fn chain_longer_than_possible() {
    // Ten blocks fit one chunk; a second one, however well formed, is one
    // too many.
    let a = area(10, 0);
    let c = a.chunk(0);
    set_next(&a.m, c, a.spare.as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 1,
            pa: a.spare,
            field: LinkField::Next,
            fault: ChainFault::TooLong { max: 1 }
        })
    );
    set_next(&a.m, c, 0);
    a.restores();
    // After a full chunk the kernel's empty trailing chunk is accepted,
    // but nothing may follow it.
    let a = area(511, 0);
    let c = a.chunk(0);
    set_next(&a.m, c, a.spare.as_u64());
    set_next(&a.m, a.spare, c.as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 2,
            pa: c,
            field: LinkField::Next,
            fault: ChainFault::TooLong { max: 2 }
        })
    );
}

#[test]
fn the_kernels_trailing_empty_chunk_is_accepted() {
    let a = area(511, 0);
    let c = a.chunk(0);
    set_next(&a.m, c, a.spare.as_u64());
    let reserved = a.m.reserved_pages();
    let (area, got) = restore(&a.m, &a.t, &a.d).unwrap();
    assert_eq!(got, a.blocks);
    assert_eq!(area.chunks, 2);
    assert_eq!(a.m.reserved_pages(), reserved - 2, "both chunk pages freed");
}

#[test]
fn a_non_empty_chunk_after_the_last_block() {
    let a = area(511, 0);
    let c = a.chunk(0);
    set_next(&a.m, c, a.spare.as_u64());
    set_entry(&a.m, a.spare, 0, a.blocks[0].as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::TooManyBlocks {
            at: EntryAt { chunk: ChunkAt { index: 1, pa: a.spare }, entry: 0 },
            expected: 511
        }
    );
}

#[test]
fn misaligned_link() {
    let a = area(1022, 0);
    let (c0, c1) = (a.chunk(0), a.chunk(1));
    set_next(&a.m, c0, c1.as_u64() + 8);
    let e = a.fails(&a.d);
    let pa = PhysAddr::new(c1.as_u64() + 8);
    assert_eq!(
        e,
        VmallocError::Chain(ChainError { index: 1, pa, field: LinkField::Next, fault: ChainFault::Misaligned })
    );
    set_next(&a.m, c0, c1.as_u64());
    a.restores();
}

#[test]
fn chunk_outside_ram() {
    let a = area(1022, 0);
    let low = PhysAddr::new(0x1000);
    let e = a.fails(&KhoVmalloc { first: low.as_u64(), ..a.d });
    assert!(
        matches!(e, VmallocError::Chain(ChainError { index: 0, pa, field: LinkField::Head, fault: ChainFault::NotRam(AbiError::NotRam { .. }) }) if pa == low),
        "{e}"
    );
    let c0 = a.chunk(0);
    let high = a.m.ram_end();
    set_next(&a.m, c0, high.as_u64());
    let e = a.fails(&a.d);
    assert!(
        matches!(e, VmallocError::Chain(ChainError { index: 1, pa, fault: ChainFault::NotRam(_), .. }) if pa == high),
        "{e}"
    );
    assert_eq!(e.errno(), Errno::Inval);
}

#[test]
fn block_outside_ram() {
    let a = area(20, 0);
    let c = a.chunk(0);
    let far = 0x10_0000_0000_0000u64;
    set_entry(&a.m, c, 19, far);
    let e = a.fails(&a.d);
    assert!(
        matches!(e, VmallocError::BlockNotRam { at, source: AbiError::NotRam { pa, .. } } if at == a.entry_at(0, 19) && pa.as_u64() == far),
        "{e}"
    );
    // A block that starts in RAM and runs past its end.
    let a = area(2, 10);
    let c = a.chunk(0);
    let last = (1..)
        .map(|i| a.m.ram_end().as_u64() - i * (4 << 20))
        .find(|&pa| !a.blocks.contains(&PhysAddr::new(pa)))
        .unwrap();
    let tail = a.m.ram_end().as_u64();
    set_entry(&a.m, c, 1, tail);
    assert!(matches!(a.fails(&a.d), VmallocError::BlockNotRam { .. }));
    set_entry(&a.m, c, 1, last);
    assert!(matches!(a.fails(&a.d), VmallocError::BlockNotPreserved { .. }), "in RAM, but not preserved");
}

#[test]
fn unpreserved_chunk() {
    let a = area(3, 0);
    // A page of RAM nobody preserved (poisoned at boot).
    let stray = PhysAddr::new(a.m.ram_end().as_u64() - PAGE);
    assert!(a.m.is_poisoned(stray));
    let e = a.fails(&KhoVmalloc { first: stray.as_u64(), ..a.d });
    let source = AbiError::NotPreserved { pa: stray, order: 0 };
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 0,
            pa: stray,
            field: LinkField::Head,
            fault: ChainFault::NotClaimable(source)
        })
    );
    assert_eq!(e.errno(), Errno::NoEnt);
    a.restores();
}

#[test]
fn unpreserved_block() {
    let a = area(600, 0);
    // A page of RAM nobody preserved (poisoned at boot).
    let stray = PhysAddr::new(a.m.ram_end().as_u64() - PAGE);
    assert!(a.m.is_poisoned(stray));
    let c1 = a.chunk(1);
    set_entry(&a.m, c1, 50, stray.as_u64());
    let e = a.fails(&a.d);
    assert_eq!(
        e,
        VmallocError::BlockNotPreserved {
            at: a.entry_at(1, 50),
            source: AbiError::NotPreserved { pa: stray, order: 0 }
        }
    );
    assert_eq!(e.errno(), Errno::NoEnt);
    // A block listed twice: the second claim fails.
    set_entry(&a.m, c1, 50, a.blocks[7].as_u64());
    let e = a.fails(&a.d);
    assert!(matches!(e, VmallocError::BlockNotPreserved { at, .. } if at == a.entry_at(1, 50)));
    // A block preserved at another order.
    set_entry(&a.m, c1, 50, a.spare.as_u64());
    set_entry(&a.m, c1, 51, 0);
    let wrong = KhoVmalloc { order: 1, total_pages: 2 * 600, ..a.d };
    assert!(matches!(a.fails(&wrong), VmallocError::BlockMisaligned { .. } | VmallocError::BlockNotPreserved { .. }));
    set_entry(&a.m, c1, 50, a.blocks[561].as_u64());
    set_entry(&a.m, c1, 51, a.blocks[562].as_u64());
    a.restores();
}

#[test]
fn a_chunk_listed_as_a_block() {
    let a = area(1022, 0);
    let (c0, c1) = (a.chunk(0), a.chunk(1));
    set_entry(&a.m, c0, 5, c1.as_u64());
    let e = a.fails(&a.d);
    // The block claim takes the chunk page; the walk then cannot claim it
    // as a chunk (not a cycle: it was never a chunk of this chain before).
    assert_eq!(
        e,
        VmallocError::Chain(ChainError {
            index: 1,
            pa: c1,
            field: LinkField::Next,
            fault: ChainFault::NotClaimable(AbiError::NotPreserved { pa: c1, order: 0 })
        })
    );
    set_entry(&a.m, c0, 5, a.blocks[5].as_u64());
    a.restores();
}

#[test]
fn restoring_twice_fails_the_second_time() {
    let a = area(30, 0);
    a.restores();
    let e = kho_vmalloc::restore(&WithTracker::new(&a.m, &a.t), &a.d, |_| {}).unwrap_err();
    assert!(matches!(e, VmallocError::Chain(ChainError { index: 0, fault: ChainFault::NotClaimable(_), .. })), "{e}");
}

#[test]
fn restore_into_a_slice() {
    let a = area(40, 1);
    let p = WithTracker::new(&a.m, &a.t);
    let mut small = vec![PhysAddr::NULL; 39];
    let e = kho_vmalloc::restore_into(&p, &a.d, &mut small).unwrap_err();
    assert_eq!(e, VmallocError::OutputTooSmall { need: 40, have: 39 });
    assert_eq!(e.errno(), Errno::NoSpc);
    assert_eq!(a.t.claimed(), vec![]);
    assert_eq!(kho_vmalloc::block_count(&a.d, a.m.max_order()), Ok(40));
    let mut out = vec![PhysAddr::NULL; 64];
    let area = kho_vmalloc::restore_into(&p, &a.d, &mut out).unwrap();
    assert_eq!(&out[..area.blocks as usize], &a.blocks[..]);
    assert!(out[40..].iter().all(|b| b.is_null()));
}
