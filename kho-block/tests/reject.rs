//! Every way a restore refuses a chain, each with its exact error, and the
//! promise that a refused restore leaves nothing claimed.

mod common;

use common::{LaxClaim, PAGE, handover, machine, page, walk, write_header};
use kho_abi::chain::ChainFault;
use kho_abi::{AbiError, BLOCK_CHAIN_MAX, Errno, Order, PhysAddr, Preserve, ToErrno, WithTracker};
use kho_block::{BlockError, BlockSet, ChainError, Fault, Field, RestoredRawBlockSet};
use kho_sim::{Machine, ModelTracker};

const FILE: usize = 64;
const PER_BLOCK: u64 = 63;

/// Writes blocks at the given page indices: `(page, next page or raw
/// link, count)`, and returns the incoming tracker preserving `preserved`.
fn build(m: &Machine, blocks: &[(u64, Link, u64)], preserved: &[u64]) -> ModelTracker {
    for &(i, next, count) in blocks {
        let next = match next {
            Link::End => 0,
            Link::Page(j) => page(m, j).as_u64(),
            Link::Raw(v) => v,
        };
        write_header(m, page(m, i), next, count);
    }
    ModelTracker::incoming(preserved.iter().map(|&i| (page(m, i), Order::ZERO)).collect())
}

#[derive(Clone, Copy)]
enum Link {
    End,
    Page(u64),
    Raw(u64),
}

/// Restores, expecting a chain error, and checks nothing stayed claimed.
fn refused(m: &Machine, t: &ModelTracker, head: PhysAddr, entry_size: usize) -> ChainError {
    let p = WithTracker::new(m, t);
    let err = RestoredRawBlockSet::restore(&p, head, entry_size).expect_err("restore must fail");
    assert_eq!(t.claimed(), vec![], "claims left after {err}");
    assert_eq!(m.outstanding_pages(), 0);
    assert_eq!(err.errno(), Errno::Inval);
    match err {
        BlockError::Chain(c) => c,
        other => panic!("expected a chain error, got {other:?}"),
    }
}

fn chain_err(index: usize, pa: PhysAddr, field: Field, fault: Fault) -> ChainError {
    ChainError { index, pa, field, fault }
}

#[test]
fn head_zero_is_an_empty_set() {
    let m = machine();
    let t = ModelTracker::incoming(vec![]);
    let p = WithTracker::new(&m, &t);
    let set = RestoredRawBlockSet::restore(&p, PhysAddr::NULL, FILE).unwrap();
    assert_eq!((set.len(), set.blocks(), set.head()), (0, 0, PhysAddr::NULL));
    assert!(set.is_empty());
    assert!(set.iter(&p).next().is_none());
    set.free(&p).unwrap();
}

#[test]
fn a_valid_chain_with_partly_used_blocks_restores() {
    let m = machine();
    let t = build(&m, &[(0, Link::Page(5), 5), (5, Link::Page(2), 63), (2, Link::End, 1)], &[0, 2, 5, 9]);
    let p = WithTracker::new(&m, &t);
    let set = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap();
    assert_eq!((set.len(), set.blocks()), (69, 3));
    assert_eq!(t.claimed(), vec![(page(&m, 0), Order::ZERO), (page(&m, 2), Order::ZERO), (page(&m, 5), Order::ZERO)]);
    let pas: Vec<PhysAddr> = set.iter(&p).collect::<Result<_, _>>().unwrap();
    assert_eq!(pas.len(), 69);
    assert_eq!(pas[4], page(&m, 0).checked_add(16 + 4 * 64).unwrap());
    assert_eq!(pas[5], page(&m, 5).checked_add(16).unwrap());
    assert_eq!(pas[68], page(&m, 2).checked_add(16).unwrap());
    set.unclaim(&p);
    assert_eq!(t.claimed(), vec![]);
}

#[test]
fn misaligned_links() {
    let m = machine();
    let t = build(&m, &[(0, Link::Raw(page(&m, 1).as_u64() + 8), 1), (1, Link::End, 1)], &[0, 1]);
    let head = page(&m, 0).checked_add(0x800).unwrap();
    assert_eq!(refused(&m, &t, head, FILE), chain_err(0, head, Field::Head, Fault::Link(ChainFault::Misaligned)));
    let bad = page(&m, 1).checked_add(8).unwrap();
    assert_eq!(refused(&m, &t, page(&m, 0), FILE), chain_err(1, bad, Field::Next, Fault::Link(ChainFault::Misaligned)));
}

#[test]
fn links_outside_ram() {
    let m = machine();
    let below = PhysAddr::new(0x1000);
    let above = m.ram_end();
    let top = PhysAddr::new(!(PAGE - 1));
    for bad in [below, above, top] {
        let t = build(&m, &[(0, Link::Raw(bad.as_u64()), 2)], &[0]);
        let e = refused(&m, &t, bad, FILE);
        assert!(
            matches!(e, ChainError { index: 0, pa, field: Field::Head, fault: Fault::Link(ChainFault::NotRam(_)) } if pa == bad)
        );
        let e = refused(&m, &t, page(&m, 0), FILE);
        assert!(
            matches!(e, ChainError { index: 1, pa, field: Field::Next, fault: Fault::Link(ChainFault::NotRam(_)) } if pa == bad)
        );
    }
}

#[test]
fn counts_zero_and_above_capacity() {
    let m = machine();
    let t = build(&m, &[(0, Link::Page(1), 63), (1, Link::Page(2), 0), (2, Link::End, 1)], &[0, 1, 2]);
    assert_eq!(refused(&m, &t, page(&m, 0), FILE), chain_err(1, page(&m, 1), Field::Count, Fault::CountZero));

    for count in [PER_BLOCK + 1, u64::MAX] {
        let t = build(&m, &[(0, Link::Page(1), 1), (1, Link::Page(2), 63), (2, Link::End, count)], &[0, 1, 2]);
        let fault = Fault::CountTooLarge { count, max: 63 };
        assert_eq!(refused(&m, &t, page(&m, 0), FILE), chain_err(2, page(&m, 2), Field::Count, fault));
    }
    // The same count is fine for a smaller entry: capacity follows the size.
    let t = build(&m, &[(0, Link::End, 64)], &[0]);
    let p = WithTracker::new(&m, &t);
    assert_eq!(RestoredRawBlockSet::restore(&p, page(&m, 0), 32).unwrap().len(), 64);
}

#[test]
fn unpreserved_or_wrong_order_block_pages() {
    let m = machine();
    let t = build(&m, &[(0, Link::Page(1), 1), (1, Link::Page(2), 1), (2, Link::End, 1)], &[0, 1]);
    let pa = page(&m, 2);
    let fault = Fault::Link(ChainFault::NotClaimable(AbiError::NotPreserved { pa, order: 0 }));
    assert_eq!(refused(&m, &t, page(&m, 0), FILE), chain_err(2, pa, Field::Next, fault));

    // Page 1 lies inside an order-1 preserved block: not an order-0 block.
    let blocks = vec![(page(&m, 0), Order::new(1, "test").unwrap()), (page(&m, 2), Order::ZERO)];
    let t = ModelTracker::incoming(blocks);
    let e = refused(&m, &t, page(&m, 0), FILE);
    assert!(matches!(
        e,
        ChainError { index: 0, field: Field::Head, fault: Fault::Link(ChainFault::NotClaimable(_)), .. }
    ));
}

#[test]
fn a_chain_into_poisoned_memory_fails_at_that_block() {
    // A real set whose middle block the tracker lost before kexec: the next
    // kernel poisons it and the restore stops there.
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<[u8; FILE]>::new();
    set.grow(&p, 3 * 63).unwrap();
    set.writer(&p).extend(&[[7u8; FILE]; 3 * 63]).unwrap();
    let blocks = walk(&m, set.head(), 10);
    t.unpreserve(blocks[1].0, Order::ZERO).unwrap();
    let head = set.head();
    let (m2, t2) = handover(m, &t);
    assert!(m2.is_poisoned(blocks[1].0));
    let fault = Fault::Link(ChainFault::NotClaimable(AbiError::NotPreserved { pa: blocks[1].0, order: 0 }));
    assert_eq!(refused(&m2, &t2, head, FILE), chain_err(1, blocks[1].0, Field::Next, fault));
    assert_eq!(m2.reserved_pages(), 2);
}

#[test]
fn cycles_are_named_where_they_close() {
    let m = machine();
    // A block linking to itself.
    let t = build(&m, &[(0, Link::Page(0), 1)], &[0]);
    assert_eq!(
        refused(&m, &t, page(&m, 0), FILE),
        chain_err(1, page(&m, 0), Field::Next, Fault::Link(ChainFault::Cycle { first: 0 }))
    );
    // 0 -> 1 -> 2 -> 3 -> 1.
    let links = [(0, Link::Page(1), 1), (1, Link::Page(2), 2), (2, Link::Page(3), 3), (3, Link::Page(1), 4)];
    let t = build(&m, &links, &[0, 1, 2, 3]);
    assert_eq!(
        refused(&m, &t, page(&m, 0), FILE),
        chain_err(4, page(&m, 1), Field::Next, Fault::Link(ChainFault::Cycle { first: 1 }))
    );
    // A 100-block ring back to the head.
    let ring: Vec<_> = (0..100).map(|i| (i, Link::Page((i + 1) % 100), 1)).collect();
    let t = build(&m, &ring, &(0..100).collect::<Vec<_>>());
    assert_eq!(
        refused(&m, &t, page(&m, 0), FILE),
        chain_err(100, page(&m, 0), Field::Next, Fault::Link(ChainFault::Cycle { first: 0 }))
    );
}

#[test]
fn cycles_are_found_and_every_claim_undone_even_if_claim_allows_repeats() {
    // (tail length, cycle length): Brent's walk must stop, report a block
    // really seen before, and undo every claim it made.
    for (mu, lambda) in [(0u64, 1u64), (0, 2), (1, 1), (5, 7), (0, 100), (300, 1), (37, 64), (64, 65)] {
        let m = machine();
        let n = mu + lambda;
        for i in 0..n {
            let next = if i + 1 < n { i + 1 } else { mu };
            write_header(&m, page(&m, i), page(&m, next).as_u64(), 1);
        }
        let lax = LaxClaim { preserved: (0..n).map(|i| page(&m, i).as_u64()).collect(), ..Default::default() };
        let p = WithTracker::new(&m, &lax);
        let err = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap_err();
        let BlockError::Chain(ChainError {
            index,
            pa,
            field: Field::Next,
            fault: Fault::Link(ChainFault::Cycle { first }),
        }) = err
        else {
            panic!("({mu}, {lambda}): {err:?}");
        };
        let first = first as usize;
        assert!(first < index && index <= 3 * (n as usize) + 2, "({mu}, {lambda}): {first} {index}");
        assert_eq!(walk(&m, page(&m, 0), first + 1).last().map(|b| b.0), Some(pa), "block {first} is not {pa}");
        assert!(lax.claims.borrow().values().all(|&c| c == 0), "({mu}, {lambda}): {:?}", lax.claims.borrow());
    }
}

#[test]
fn chain_cap_is_ten_thousand_blocks() {
    let m = machine();
    let n = BLOCK_CHAIN_MAX as u64 + 1;
    for i in 0..n {
        let next = if i + 1 < n { page(&m, i + 1).as_u64() } else { 0 };
        write_header(&m, page(&m, i), next, 1);
    }
    let all: Vec<_> = (0..n).map(|i| (page(&m, i), Order::ZERO)).collect();
    let t = ModelTracker::incoming(all.clone());
    let fault = Fault::Link(ChainFault::TooLong { max: BLOCK_CHAIN_MAX as u64 });
    assert_eq!(refused(&m, &t, page(&m, 0), FILE), chain_err(BLOCK_CHAIN_MAX, page(&m, n - 1), Field::Next, fault));
    // Exactly the cap is accepted.
    write_header(&m, page(&m, n - 2), 0, 1);
    let p = WithTracker::new(&m, &t);
    let set = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap();
    assert_eq!((set.blocks(), set.len()), (BLOCK_CHAIN_MAX, BLOCK_CHAIN_MAX));
    assert_eq!(t.claimed().len(), BLOCK_CHAIN_MAX);
    set.unclaim(&p);
    assert_eq!(t.claimed(), vec![]);
}

#[test]
fn restoring_twice_fails_the_second_time() {
    let m = machine();
    let t = build(&m, &[(0, Link::Page(1), 1), (1, Link::End, 2)], &[0, 1]);
    let p = WithTracker::new(&m, &t);
    let first = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap();
    let err = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap_err();
    let pa = page(&m, 0);
    let fault = Fault::Link(ChainFault::NotClaimable(AbiError::NotPreserved { pa, order: 0 }));
    assert_eq!(err, BlockError::Chain(chain_err(0, pa, Field::Head, fault)));
    assert_eq!(t.claimed().len(), 2, "the failed restore must not undo the first one's claims");
    first.unclaim(&p);
    assert_eq!(t.claimed(), vec![]);
}

#[test]
fn entry_size_is_checked_before_the_chain() {
    let m = machine();
    let t = build(&m, &[(0, Link::End, 1)], &[0]);
    let p = WithTracker::new(&m, &t);
    for size in [0, 4081, usize::MAX] {
        let err = RestoredRawBlockSet::restore(&p, page(&m, 0), size).unwrap_err();
        assert_eq!(err, BlockError::EntrySize { size, max: 4080 });
        assert_eq!(err.errno(), Errno::Inval);
    }
    assert_eq!(t.claimed(), vec![]);
}

#[test]
fn messages_say_what_and_where() {
    let m = machine();
    let t = build(&m, &[(0, Link::Page(1), 1), (1, Link::End, 99)], &[0, 1]);
    let p = WithTracker::new(&m, &t);
    let err = RestoredRawBlockSet::restore(&p, page(&m, 0), FILE).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("block 1 at {}, field count: count 99 above the 63 entries a block holds", page(&m, 1))
    );
}
