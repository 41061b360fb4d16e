//! Loom models of the lock-free tree: `RUSTFLAGS="--cfg loom" cargo test
//! -p kho-track --release --test loom`.
#![cfg(loom)]

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use kho_abi::{AbiError, Order, PAGE_SIZE, PhysAddr, RadixKey};
use kho_track::RadixTree;
use kho_track::mem::{TreeMem, WORDS};
use kho_track::sync::AtomicU64;
use kho_track::walk::{Guard, TreeView};
use loom::sync::Arc;

/// Pages of loom atomics. Freed pages are counted, never reused, so every
/// allocation is zeroed.
struct LoomMem {
    pages: Vec<Box<[AtomicU64; WORDS]>>,
    next: AtomicUsize,
    freed: AtomicUsize,
}

impl LoomMem {
    fn new(pages: usize) -> Self {
        LoomMem {
            pages: (0..pages).map(|_| Box::new(std::array::from_fn(|_| AtomicU64::new(0)))).collect(),
            next: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
        }
    }

    fn live(&self) -> usize {
        self.next.load(StdOrdering::SeqCst) - self.freed.load(StdOrdering::SeqCst)
    }
}

impl TreeMem for LoomMem {
    fn words(&self, pa: PhysAddr) -> Result<&[AtomicU64; WORDS], AbiError> {
        let i = (pa.as_u64() / PAGE_SIZE as u64).checked_sub(1).ok_or(AbiError::NotRam { pa, len: 1 })?;
        self.pages.get(i as usize).map(|b| &**b).ok_or(AbiError::NotRam { pa, len: 1 })
    }

    fn alloc_node(&self) -> Result<PhysAddr, AbiError> {
        let i = self.next.fetch_add(1, StdOrdering::SeqCst);
        if i >= self.pages.len() {
            return Err(AbiError::NoMemory { order: 0 });
        }
        Ok(PhysAddr::new((i as u64 + 1) * PAGE_SIZE as u64))
    }

    fn free_node(&self, _pa: PhysAddr) {
        self.freed.fetch_add(1, StdOrdering::SeqCst);
    }
}

fn key(page: u64) -> RadixKey {
    RadixKey::encode(PhysAddr::new(page * PAGE_SIZE as u64), Order::ZERO).unwrap()
}

fn keys_of(mem: &LoomMem, root: PhysAddr) -> Vec<RadixKey> {
    let mut out = vec![];
    let _ = TreeView::new(mem, root)
        .for_each_block::<()>(&mut Guard::trusted(), &mut |pa, o| {
            out.push(RadixKey::encode(pa, o).unwrap());
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// Runs `f` under loom with at most `preemptions` forced thread switches.
/// A full walk loads every slot of every table it meets (512 per table),
/// so models that walk allow more branches and fewer preemptions.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.max_branches = 200_000;
    b.check(f);
}

#[test]
fn concurrent_preserves_sharing_a_table() {
    model(2, || {
        let mem = Arc::new(LoomMem::new(16));
        let tree = Arc::new(RadixTree::new(&*mem).unwrap());
        let (m2, t2) = (mem.clone(), tree.clone());
        let th = loom::thread::spawn(move || t2.insert(&*m2, key(1)).unwrap());
        let mine = tree.insert(&*mem, key(2)).unwrap();
        let theirs = th.join().unwrap();
        assert!(mine && theirs);
        assert!(tree.contains(&*mem, key(1)).unwrap() && tree.contains(&*mem, key(2)).unwrap());
        assert!(!tree.contains(&*mem, key(3)).unwrap());
        // The loser freed its branch: one root plus one path remain.
        assert_eq!(mem.live(), kho_abi::GEOMETRY.depth as usize);
    });
}

#[test]
fn concurrent_preserves_into_one_leaf_word() {
    model(2, || {
        let mem = Arc::new(LoomMem::new(16));
        let tree = Arc::new(RadixTree::new(&*mem).unwrap());
        // The leaf exists already: both threads set bits of the same word.
        tree.insert(&*mem, key(8)).unwrap();
        let (m2, t2) = (mem.clone(), tree.clone());
        let th = loom::thread::spawn(move || t2.insert(&*m2, key(9)).unwrap());
        assert!(tree.insert(&*mem, key(10)).unwrap());
        assert!(th.join().unwrap());
        for k in [8, 9, 10] {
            assert!(tree.contains(&*mem, key(k)).unwrap(), "key {k} lost");
        }
        assert_eq!(mem.live(), kho_abi::GEOMETRY.depth as usize);
    });
}

#[test]
fn preserve_against_unpreserve_of_the_same_key() {
    model(2, || {
        let mem = Arc::new(LoomMem::new(16));
        let tree = Arc::new(RadixTree::new(&*mem).unwrap());
        let (m2, t2) = (mem.clone(), tree.clone());
        let th = loom::thread::spawn(move || t2.insert(&*m2, key(5)).unwrap());
        let removed = tree.remove(&*mem, key(5)).unwrap();
        let inserted = th.join().unwrap();
        assert!(inserted);
        // Removal saw the key only if it ran after the insertion, and then
        // the key is gone; otherwise the insertion stands.
        assert_eq!(tree.contains(&*mem, key(5)).unwrap(), !removed);
    });
}

#[test]
fn walk_concurrent_with_preserves() {
    model(1, || {
        let mem = Arc::new(LoomMem::new(24));
        let tree = Arc::new(RadixTree::new(&*mem).unwrap());
        tree.insert(&*mem, key(3)).unwrap();
        let (m2, t2) = (mem.clone(), tree.clone());
        let th = loom::thread::spawn(move || {
            t2.insert(&*m2, key(4)).unwrap();
            // Far away: a new branch from the root.
            t2.insert(&*m2, RadixKey::encode(PhysAddr::new(1 << 40), Order::new(9, "o").unwrap()).unwrap()).unwrap();
        });
        let seen = keys_of(&mem, tree.root());
        // Whatever the interleaving, the walk sees the key preserved before
        // it started and nothing that was never preserved.
        assert!(seen.contains(&key(3)));
        assert!(seen.len() <= 3);
        th.join().unwrap();
        assert_eq!(keys_of(&mem, tree.root()).len(), 3);
    });
}
