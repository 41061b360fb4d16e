//! The preserved-memory workloads and the simulated machines they run on.

use kho_abi::{Order, PAGE_SHIFT, PhysAddr};
use kho_sim::{DEFAULT_RAM_BASE, Machine, MachineConfig};

/// A small, fast, seeded generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Shuffles `v` (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// A pattern of preserved memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// VM guest memory in 1 GiB pages, physically contiguous (a hugetlb
    /// pool reserved at boot).
    Vm1G,
    /// VM guest memory in 2 MiB pages, in runs of 1-64 pages with holes of
    /// 1-8 pages between runs.
    Vm2M,
    /// memfd-like order-0 pages: runs of 1-512 pages, holes of 1-64 pages.
    MemfdRuns,
    /// Fragmented order-0: one page of every aligned pair, chosen at random.
    Fragmented,
    /// Sparse order-0: one page, at a random place, in every 2 MiB.
    Sparse,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 5] =
        [Workload::Vm1G, Workload::Vm2M, Workload::MemfdRuns, Workload::Fragmented, Workload::Sparse];

    /// Name for tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Vm1G => "VM, 1 GiB pages",
            Workload::Vm2M => "VM, 2 MiB pages",
            Workload::MemfdRuns => "memfd order-0 runs",
            Workload::Fragmented => "fragmented order-0",
            Workload::Sparse => "sparse order-0",
        }
    }

    /// Name for file names.
    pub fn slug(self) -> &'static str {
        match self {
            Workload::Vm1G => "vm-1g",
            Workload::Vm2M => "vm-2m",
            Workload::MemfdRuns => "memfd-runs",
            Workload::Fragmented => "fragmented",
            Workload::Sparse => "sparse",
        }
    }

    /// How the blocks are laid out.
    pub fn description(self) -> &'static str {
        match self {
            Workload::Vm1G => "order-18 blocks (1 GiB), physically contiguous",
            Workload::Vm2M => "order-9 blocks (2 MiB) in runs of 1-64 blocks, holes of 1-8 blocks (uniform)",
            Workload::MemfdRuns => "order-0 pages in runs of 1-512 pages, holes of 1-64 pages (uniform)",
            Workload::Fragmented => "order-0, one page of every aligned pair of pages, chosen at random",
            Workload::Sparse => "order-0, one page at a random place in every 2 MiB",
        }
    }

    /// Order of every block.
    pub fn order(self) -> u32 {
        match self {
            Workload::Vm1G => 18,
            Workload::Vm2M => 9,
            _ => 0,
        }
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> u64 {
        1 << (PAGE_SHIFT + self.order())
    }

    /// The runs of `blocks` preserved blocks: `(first block index, count)`,
    /// ascending and disjoint; block `i` lies at byte `i * block_bytes()`.
    pub fn runs(self, blocks: u64) -> Runs {
        let seed = match self {
            Workload::Vm1G => 1,
            Workload::Vm2M => 2,
            Workload::MemfdRuns => 3,
            Workload::Fragmented => 4,
            Workload::Sparse => 5,
        };
        Runs { workload: self, rng: Rng::new(seed), next: 0, left: blocks, i: 0 }
    }

    /// Bytes from block 0 to the end of the last block for `blocks` blocks.
    pub fn span(self, blocks: u64) -> u64 {
        let b = match self {
            Workload::Vm1G => blocks,
            Workload::Fragmented => 2 * blocks,
            Workload::Sparse => 512 * blocks,
            Workload::Vm2M | Workload::MemfdRuns => self.runs(blocks).last().map_or(0, |(s, n)| s + n),
        };
        b * self.block_bytes()
    }
}

/// The runs of a workload (see [`Workload::runs`]).
#[derive(Clone, Debug)]
pub struct Runs {
    workload: Workload,
    rng: Rng,
    /// The first block index the next run may use.
    next: u64,
    /// Blocks still to hand out.
    left: u64,
    /// Runs handed out.
    i: u64,
}

impl Iterator for Runs {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.left == 0 {
            return None;
        }
        let (start, len) = match self.workload {
            Workload::Vm1G => (0, self.left),
            Workload::Vm2M | Workload::MemfdRuns => {
                let (max_len, max_gap) = if self.workload == Workload::Vm2M { (64, 8) } else { (512, 64) };
                let len = 1 + self.rng.below(max_len);
                let gap = if self.i == 0 { 0 } else { 1 + self.rng.below(max_gap) };
                (self.next + gap, len.min(self.left))
            }
            Workload::Fragmented => (2 * self.i + self.rng.below(2), 1),
            Workload::Sparse => (512 * self.i + self.rng.below(512), 1),
        };
        self.i += 1;
        self.left -= len;
        self.next = start + len;
        Some((start, len))
    }
}

/// A simulated machine with room for a workload: RAM starts with headroom
/// for the tracker's own pages (the allocator hands out the lowest pages
/// first), and preserved blocks start at `base`.
pub struct Arena {
    /// The machine.
    pub machine: Machine,
    /// PA of block index 0, aligned to 1 GiB.
    pub base: u64,
}

/// `v` rounded up to a multiple of `a` (a power of two).
pub fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl Arena {
    /// A machine whose preserved region spans `span` bytes, serving blocks
    /// up to `max_order`, with no scratch area. RAM is a sparse memfd, so
    /// pages never written (the preserved blocks themselves) cost nothing.
    pub fn new(span: u64, max_order: u32) -> Arena {
        const GIB: u64 = 1 << 30;
        // Tree pages: at most one leaf per 128 MiB of order-0 span, plus
        // tables; generous.
        let headroom = align_up(span / 8192 + (64 << 20), GIB);
        let ram = headroom + align_up(span.max(1), GIB);
        let mut cfg = MachineConfig::with_ram(DEFAULT_RAM_BASE, ram);
        cfg.scratch = vec![];
        cfg.max_order = Order::new(u64::from(max_order), "max_order").expect("order");
        let machine = Machine::new(cfg).expect("simulated machine");
        let base = align_up(DEFAULT_RAM_BASE.as_u64() + headroom, GIB);
        Arena { machine, base }
    }

    /// PA of block `index` of `order`.
    pub fn pa(&self, index: u64, order: u32) -> PhysAddr {
        PhysAddr::new(self.base + (index << (PAGE_SHIFT + order)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(w: Workload, blocks: u64) -> Vec<(u64, u64)> {
        let runs: Vec<(u64, u64)> = w.runs(blocks).collect();
        assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), blocks, "{w:?}");
        assert!(runs.iter().all(|r| r.1 > 0));
        // Ascending, disjoint and not touching (holes between runs), except
        // for the single-page workloads whose picks may touch.
        for p in runs.windows(2) {
            assert!(p[0].0 + p[0].1 <= p[1].0, "{w:?} {p:?}");
        }
        let end = runs.last().map_or(0, |r| r.0 + r.1);
        assert!(end * w.block_bytes() <= w.span(blocks), "{w:?}");
        runs
    }

    #[test]
    fn workload_shapes() {
        assert_eq!(check(Workload::Vm1G, 16), vec![(0, 16)]);
        let r = check(Workload::Vm2M, 10_000);
        assert!(r.windows(2).all(|p| p[0].0 + p[0].1 < p[1].0));
        assert!(r.iter().all(|x| x.1 <= 64));
        let r = check(Workload::MemfdRuns, 100_000);
        assert!(r.iter().all(|x| x.1 <= 512));
        // Mean run 256.5 pages: about 390 runs.
        assert!((300..500).contains(&r.len()), "{}", r.len());
        let r = check(Workload::Fragmented, 1000);
        assert!(r.iter().enumerate().all(|(i, x)| x.0 / 2 == i as u64));
        assert_eq!(Workload::Fragmented.span(1000), 2000 * kho_abi::PAGE_SIZE as u64);
        let r = check(Workload::Sparse, 1000);
        assert!(r.iter().enumerate().all(|(i, x)| x.0 / 512 == i as u64));
        assert_eq!(check(Workload::MemfdRuns, 0), vec![]);
        // Deterministic.
        assert_eq!(Workload::MemfdRuns.runs(5000).collect::<Vec<_>>(), check(Workload::MemfdRuns, 5000));
    }

    #[test]
    fn rng_below_and_shuffle() {
        let mut r = Rng::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }

    fn rss() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    #[test]
    fn a_machine_of_tibs_is_not_touched() {
        // 4 TiB of simulated RAM through MachineConfig::with_ram: the RAM
        // is a sparse memfd and the allocator's per-page state is only
        // written once per largest-order block, so the process grows by
        // far less than the RAM's 1/4096 (1 GiB) per-page state.
        let before = rss();
        let a = Arena::new(4 << 40, 18);
        assert!(a.machine.ram_size() > 4 << 40);
        let t = kho_track::Tracker::new(&a.machine, &[], Default::default()).expect("tracker");
        let last = a.pa((4 << 40) / kho_abi::PAGE_SIZE as u64 - 1, 0);
        t.preserve_folio(last, Order::ZERO).expect("preserve at the top");
        let grown = rss().saturating_sub(before);
        t.destroy();
        assert!(grown < 300 << 20, "grew by {grown} bytes");
    }

    #[test]
    fn arena_places_blocks_after_headroom() {
        let a = Arena::new(1 << 30, 10);
        assert!(a.base >= a.machine.ram_base().as_u64() + (64 << 20));
        assert_eq!(a.base % (1 << 30), 0);
        let last = a.pa((1 << 30) / kho_abi::PAGE_SIZE as u64 - 1, 0).as_u64();
        assert!(last < a.machine.ram_end().as_u64());
    }
}
