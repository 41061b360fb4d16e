//! Model-based test: random operations on a block set and on a `Vec` of
//! entries must agree, the chain in memory must be well formed after every
//! step, page accounting must match, and the set must either destroy to
//! nothing or restore to the model after kexec.

mod common;

use common::{entry_bytes, handover, walk};
use kho_abi::{AbiError, PAGE_SIZE, PhysAddr, WithTracker};
use kho_block::{BlockError, RawBlockSet, RestoredRawBlockSet};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Grow(usize),
    /// Grow with the `k`-th allocation from now failing.
    GrowFailing(usize, u64),
    Shrink(usize),
    Push,
    Extend(usize),
    Reserve,
    Prev,
    Truncate(usize),
    Clear,
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..300).prop_map(Op::Grow),
        1 => (0usize..300, 1u64..6).prop_map(|(n, k)| Op::GrowFailing(n, k)),
        2 => (0usize..200).prop_map(Op::Shrink),
        4 => Just(Op::Push),
        3 => (0usize..150).prop_map(Op::Extend),
        1 => Just(Op::Reserve),
        3 => Just(Op::Prev),
        1 => (0usize..300).prop_map(Op::Truncate),
        1 => Just(Op::Clear),
        1 => Just(Op::Read),
    ]
}

/// Entry sizes with very different blocks: 4080 entries per block down to
/// one.
const SIZES: [usize; 8] = [1, 8, 24, 64, 80, 1000, 2040, 4080];

struct Model {
    entries: Vec<Vec<u8>>,
    capacity: usize,
    next_value: u64,
}

/// Checks the set against the model, the chain in memory, and the pages.
fn check(m: &Machine, t: &ModelTracker, set: &RawBlockSet, model: &Model, read: bool) {
    let per = (PAGE_SIZE - 16) / set.entry_size();
    let blocks = model.capacity.div_ceil(per);
    assert_eq!((set.len(), set.capacity(), set.blocks()), (model.entries.len(), model.capacity, blocks));
    assert_eq!(m.outstanding_pages(), blocks as u64);
    assert_eq!(t.preserved_pages(), blocks as u64);
    let chain = walk(m, set.head(), blocks + 1);
    let len = model.entries.len();
    assert_eq!(chain.len(), len.div_ceil(per), "blocks reachable from the head");
    for (k, &(_, count)) in chain.iter().enumerate() {
        assert_eq!(count as usize, (len - k * per).min(per), "count of block {k}");
    }
    assert_eq!(set.head().is_null(), len == 0);
    if read {
        let got: Vec<Vec<u8>> = set
            .iter(m)
            .map(|pa| {
                let mut b = vec![0u8; set.entry_size()];
                m.read(pa.unwrap(), &mut b).unwrap();
                b
            })
            .collect();
        assert_eq!(got, model.entries);
    }
}

fn run(size: usize, ops: &[Op], destroy: bool) {
    let m = Machine::new(MachineConfig::with_ram(PhysAddr::new(0x2_0000_0000), 64 << 20)).unwrap();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = RawBlockSet::new(size).unwrap();
    let per = set.entries_per_block();
    let mut model = Model { entries: Vec::new(), capacity: 0, next_value: 0 };
    let fresh = |model: &mut Model| {
        model.next_value += 1;
        entry_bytes(model.next_value, size)
    };
    for op in ops {
        let room = model.capacity - model.entries.len();
        match *op {
            Op::Grow(n) => {
                set.grow(&p, n).unwrap();
                model.capacity += n;
            }
            Op::GrowFailing(n, k) => {
                let needed = (model.capacity + n).div_ceil(per) - model.capacity.div_ceil(per);
                m.fail_nth_allocation(k);
                let r = set.grow(&p, n);
                m.clear_failures();
                if needed as u64 >= k {
                    assert_eq!(r, Err(BlockError::Platform(AbiError::NoMemory { order: 0 })));
                } else {
                    r.unwrap();
                    model.capacity += n;
                }
            }
            Op::Shrink(n) => {
                let r = set.shrink(&p, n);
                if n > model.capacity {
                    assert_eq!(r, Err(BlockError::ShrinkTooFar { by: n, capacity: model.capacity }));
                } else {
                    r.unwrap();
                    model.capacity -= n;
                    model.entries.truncate(model.capacity);
                }
            }
            Op::Push => {
                let e = fresh(&mut model);
                let r = set.writer(&p).push(&e);
                if room == 0 {
                    assert!(matches!(r, Err(BlockError::NoSpace { .. })));
                } else {
                    r.unwrap();
                    model.entries.push(e);
                }
            }
            Op::Extend(k) => {
                let es: Vec<Vec<u8>> = (0..k).map(|_| fresh(&mut model)).collect();
                let r = set.writer(&p).extend(&es.concat());
                if k > room {
                    assert_eq!(
                        r,
                        Err(BlockError::NoSpace { len: model.entries.len(), capacity: model.capacity, wanted: k })
                    );
                } else {
                    r.unwrap();
                    model.entries.extend(es);
                }
            }
            Op::Reserve => {
                let r = set.writer(&p).reserve();
                if room == 0 {
                    assert!(matches!(r, Err(BlockError::NoSpace { .. })));
                } else {
                    let pa = r.unwrap();
                    let mut b = vec![1u8; size];
                    m.read(pa, &mut b).unwrap();
                    assert!(b.iter().all(|&x| x == 0), "reserved slot not zeroed");
                    model.entries.push(b);
                }
            }
            Op::Prev => {
                let got = set.writer(&p).prev().unwrap().map(|pa| {
                    let mut b = vec![0u8; size];
                    m.read(pa, &mut b).unwrap();
                    b
                });
                assert_eq!(got, model.entries.pop());
            }
            Op::Truncate(n) => {
                set.truncate(&p, n).unwrap();
                model.entries.truncate(n);
            }
            Op::Clear => {
                set.clear(&p).unwrap();
                model.entries.clear();
            }
            Op::Read => {}
        }
        check(&m, &t, &set, &model, matches!(op, Op::Read | Op::Prev | Op::Truncate(_)));
    }
    check(&m, &t, &set, &model, true);
    if destroy {
        set.destroy(&p).unwrap();
        assert_eq!(m.outstanding_pages(), 0);
        assert_eq!(t.blocks(), vec![]);
        return;
    }
    let head = set.head();
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let r = RestoredRawBlockSet::restore(&p2, head, size).unwrap();
    assert_eq!(r.blocks(), model.entries.len().div_ceil(per));
    assert_eq!(t2.claimed().len(), r.blocks());
    let mut buf = vec![0u8; model.entries.len() * size];
    assert_eq!(r.iter(&p2).read_into(&mut buf).unwrap(), model.entries.len());
    assert_eq!(buf, model.entries.concat());
    let reserved = m2.reserved_pages();
    let blocks = r.blocks() as u64;
    r.free(&p2).unwrap();
    assert_eq!(m2.reserved_pages(), reserved - blocks, "free returns exactly the chain's pages");
    assert_eq!(t2.unclaimed().len() as u64, reserved - blocks, "spare blocks stay preserved, unclaimed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn block_set_matches_a_vec(
        size in proptest::sample::select(SIZES.to_vec()),
        ops in proptest::collection::vec(op(), 1..60),
        destroy in any::<bool>(),
    ) {
        run(size, &ops, destroy);
    }
}
