//! The simulated machine: allocator, scratch rules, kexec, poisoning, bounds.

use kho_abi::{AbiError, Claim, KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve};
use kho_sim::{Machine, MachineConfig, ModelTracker, POISON_BYTE, SimError};

const PAGE: u64 = PAGE_SIZE as u64;

fn o(n: u64) -> Order {
    Order::new(n, "test").unwrap()
}

/// 32 MiB at 0x2_0000_0000, scratch 4 MiB at +16 MiB.
fn small() -> Machine {
    Machine::new(MachineConfig::with_ram(PhysAddr::new(0x2_0000_0000), 32 << 20)).unwrap()
}

fn in_scratch(m: &Machine, pa: PhysAddr, len: u64) -> bool {
    m.scratch().iter().any(|s| s.overlaps(pa, len))
}

fn all_scratch(m: &Machine, pa: PhysAddr, len: u64) -> bool {
    m.scratch().iter().any(|s| pa.as_u64() >= s.addr && pa.as_u64() + len <= s.addr + s.size)
}

#[test]
fn default_machine_shape() {
    let m = Machine::new(MachineConfig::default()).unwrap();
    assert_eq!(m.ram_base(), PhysAddr::new(0x1_0000_0000));
    assert_eq!(m.ram_size(), 256 << 20);
    assert_eq!(m.ram_end(), PhysAddr::new(0x1_1000_0000));
    assert_eq!(m.scratch(), &[KhoScratch { addr: 0x1_0800_0000, size: 16 << 20 }]);
    assert_eq!(m.max_order(), o(10));
    assert_eq!(m.kho_data(), None);
    assert!(!m.in_early_boot());
    assert_eq!(m.available_pages(), (256 - 16) << 8);
    assert_eq!(m.ram_ranges(), vec![(PhysAddr::new(0x1_0000_0000), 256 << 20)]);
    // Debug output is a summary, not one entry per page.
    let dbg = format!("{m:?}");
    assert!(dbg.contains("outstanding_pages: 0") && dbg.len() < 1000, "{dbg}");
    // The virtual address of RAM is not its physical address.
    let p = m.phys_to_virt(m.ram_base(), 1).unwrap();
    assert_ne!(p.as_ptr() as u64, m.ram_base().as_u64());
}

#[test]
fn bad_configs_are_refused() {
    let mut c = MachineConfig::default();
    c.scratch[0].addr = 0x1_1000_0000;
    assert!(matches!(Machine::new(c), Err(SimError::Config { .. })));
    let mut c = MachineConfig::default();
    c.scratch[0].addr += 0x800;
    assert!(matches!(Machine::new(c), Err(SimError::Config { .. })));
    let c = MachineConfig { ram_size: 3, ..MachineConfig::default() };
    assert!(matches!(Machine::new(c), Err(SimError::Config { .. })));
}

#[test]
fn every_order_is_aligned_zeroed_and_outside_scratch() {
    let m = small();
    for order in 0..=m.max_order().get() {
        let order = o(order.into());
        let bytes = order.checked_bytes().unwrap();
        let pa = m.alloc_pages(order).unwrap();
        assert!(order.aligns(pa), "{pa} order {order}");
        assert!(!in_scratch(&m, pa, bytes));
        assert_eq!(m.checksum(pa, bytes).unwrap(), zero_sum(bytes));
        m.fill_random(pa, bytes, 3).unwrap();
        m.free_pages(pa, order);
        // The same block comes back (lowest first) and is zero again.
        let again = m.alloc_pages(order).unwrap();
        assert_eq!(again, pa);
        assert_eq!(m.checksum(again, bytes).unwrap(), zero_sum(bytes));
        m.free_pages(again, order);
    }
    assert_eq!(m.outstanding_pages(), 0);
    let too_big = o(u64::from(m.max_order().get()) + 1);
    let calls = m.allocation_count();
    assert!(matches!(m.alloc_pages(too_big), Err(AbiError::OrderTooLarge { .. })));
    assert_eq!(m.allocation_count(), calls + 1);
}

fn zero_sum(len: u64) -> u64 {
    let mut c = kho_sim::Checksum::new();
    c.update(&vec![0u8; len as usize]);
    c.finish()
}

#[test]
fn blocks_never_overlap_and_exhaustion_is_no_memory() {
    let m = small();
    let free = m.available_pages();
    let mut got = Vec::new();
    let mut i = 0u64;
    loop {
        let order = o([0, 3, 1, 0, 5, 2][(i % 6) as usize]);
        i += 1;
        match m.alloc_pages(order) {
            Ok(pa) => got.push((pa.as_u64(), pa.as_u64() + order.checked_bytes().unwrap(), order)),
            Err(AbiError::NoMemory { order: n }) => {
                assert_eq!(n, order.get());
                if order == Order::ZERO {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    let pages: u64 = got.iter().map(|b| b.2.pages()).sum();
    assert_eq!(pages, free, "every free page was handed out");
    assert_eq!(m.outstanding_pages(), free);
    assert_eq!(m.available_pages(), 0);
    got.sort_unstable();
    assert!(got.windows(2).all(|w| w[0].1 <= w[1].0), "blocks overlap");
    assert!(got.iter().all(|b| b.0 >= m.ram_base().as_u64() && b.1 <= m.ram_end().as_u64()));
    for (pa, _, order) in &got {
        m.free_pages(PhysAddr::new(*pa), *order);
    }
    assert_eq!(m.outstanding_pages(), 0);
    assert_eq!(m.available_pages(), free);
    // Everything merged back: a max-order block is available again.
    m.free_pages(m.alloc_pages(m.max_order()).unwrap(), m.max_order());
}

#[test]
fn failure_injection() {
    let m = small();
    let before = m.allocation_count();
    m.fail_nth_allocation(3);
    let a = m.alloc_pages(Order::ZERO).unwrap();
    let b = m.alloc_pages(Order::ZERO).unwrap();
    assert_eq!(m.alloc_pages(o(2)), Err(AbiError::NoMemory { order: 2 }));
    let c = m.alloc_pages(Order::ZERO).unwrap();
    assert_eq!(m.allocation_count(), before + 4);
    assert_eq!(m.outstanding_pages(), 3);

    m.fail_allocations_from(2);
    let d = m.alloc_pages(Order::ZERO).unwrap();
    for _ in 0..5 {
        assert_eq!(m.alloc_pages(Order::ZERO), Err(AbiError::NoMemory { order: 0 }));
    }
    m.clear_failures();
    let e = m.alloc_pages(Order::ZERO).unwrap();
    assert_eq!(m.allocation_count(), before + 11);

    m.fail_nth_allocation(1);
    m.clear_failures();
    let f = m.alloc_pages(Order::ZERO).unwrap();
    for pa in [a, b, c, d, e, f] {
        m.free_pages(pa, Order::ZERO);
    }
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
#[should_panic(expected = "not an allocated or reserved block of that order")]
fn free_with_wrong_order_panics() {
    let m = small();
    let pa = m.alloc_pages(o(1)).unwrap();
    m.free_pages(pa, Order::ZERO);
}

#[test]
#[should_panic(expected = "not an allocated or reserved block of that order")]
fn double_free_panics() {
    let m = small();
    let pa = m.alloc_pages(Order::ZERO).unwrap();
    m.free_pages(pa, Order::ZERO);
    m.free_pages(pa, Order::ZERO);
}

#[test]
#[should_panic(expected = "not an aligned block inside RAM")]
fn free_outside_ram_panics() {
    small().free_pages(PhysAddr::new(0x1000), Order::ZERO);
}

#[test]
fn phys_mem_bounds() {
    let m = small();
    let (base, end) = (m.ram_base().as_u64(), m.ram_end().as_u64());
    let not_ram = |pa: u64, len: u64| {
        m.phys_to_virt(PhysAddr::new(pa), len) == Err(AbiError::NotRam { pa: PhysAddr::new(pa), len })
    };
    assert!(not_ram(base - 1, 1));
    assert!(not_ram(base - PAGE, 2 * PAGE));
    assert!(not_ram(end, 1));
    assert!(not_ram(end - 4, 8));
    assert!(not_ram(u64::MAX - 3, 8));
    assert!(not_ram(base, u64::MAX));
    assert!(not_ram(0, 0));
    assert!(m.phys_to_virt(PhysAddr::new(base), end - base).is_ok());
    assert!(m.phys_to_virt(PhysAddr::new(end - 8), 8).is_ok());
    // Pointers keep the PA's offset from 8-byte boundaries.
    for off in [0u64, 3, 8, 4095, 4097] {
        let p = m.phys_to_virt(PhysAddr::new(base + off), 1).unwrap();
        assert_eq!(p.as_ptr() as u64 % 8, off % 8);
    }
    // Reads and writes go through the same bytes.
    m.write(PhysAddr::new(end - 3), b"xyz").unwrap();
    let mut buf = [0u8; 3];
    m.read(PhysAddr::new(end - 3), &mut buf).unwrap();
    assert_eq!(&buf, b"xyz");
    assert!(m.read(PhysAddr::new(end - 2), &mut buf).is_err());
    assert!(m.fill_random(PhysAddr::new(end - 2), 3, 0).is_err());
    assert!(m.checksum(PhysAddr::new(base - 1), 3).is_err());
}

#[test]
fn crosses_node() {
    // Nodes of 8 MiB from a base of 1 MiB: boundaries at 9 MiB, 17 MiB, ...
    let base = 0x10_0000u64;
    let cfg = MachineConfig { numa_node_size: Some(8 << 20), ..MachineConfig::with_ram(PhysAddr::new(base), 32 << 20) };
    let m = Machine::new(cfg).unwrap();
    let pa = PhysAddr::new;
    assert!(!m.crosses_node(pa(base), Order::ZERO));
    assert!(!m.crosses_node(pa(0x8f_f000), Order::ZERO));
    assert!(!m.crosses_node(pa(0x8f_c000), o(2)));
    assert!(m.crosses_node(pa(0x80_0000), o(10)), "4 MiB at 8 MiB spans the 9 MiB boundary");
    assert!(!m.crosses_node(pa(0xc0_0000), o(10)));
    assert!(m.crosses_node(pa(0x100_0000), o(10)));
    assert!(m.crosses_node(pa(base), o(12)), "larger than a node");
    assert!(m.crosses_node(pa(base), Order::MAX));
    let flat = small();
    assert!(!flat.crosses_node(flat.ram_base(), o(12)));
}

#[test]
fn kexec_allocates_from_scratch_only_until_boot_done() {
    let m = small();
    let kept = m.alloc_pages(Order::ZERO).unwrap();
    let data = KhoData { fdt_addr: kept.as_u64(), fdt_size: PAGE, scratch_addr: 0, scratch_size: 0 };
    let m = m.kexec(data);
    assert_eq!(m.kho_data(), Some(data));
    assert!(m.in_early_boot());
    assert_eq!(m.outstanding_pages(), 0);
    assert_eq!(m.allocation_count(), 0);
    let scratch_pages = m.scratch()[0].size / PAGE;
    assert_eq!(m.available_pages(), scratch_pages);
    let mut got = Vec::new();
    while let Ok(pa) = m.alloc_pages(Order::ZERO) {
        assert!(all_scratch(&m, pa, PAGE), "{pa} outside scratch");
        got.push(pa);
    }
    assert_eq!(got.len() as u64, scratch_pages);
    for pa in got.drain(..) {
        m.free_pages(pa, Order::ZERO);
    }
    let big = m.alloc_pages(o(10)).unwrap();
    assert!(all_scratch(&m, big, 4 << 20));
    m.boot_done(&mut std::iter::empty()).unwrap();
    assert!(!m.in_early_boot());
    // Now the rest of RAM is free too (the early block stays allocated).
    assert_eq!(m.available_pages(), (m.ram_size() >> 12) - 1024);
    assert!(matches!(m.boot_done(&mut std::iter::empty()), Err(SimError::State { .. })));
    // A machine never kexec'd has no early boot to end.
    assert!(matches!(small().boot_done(&mut std::iter::empty()), Err(SimError::State { .. })));
}

#[test]
fn boot_done_poisons_all_but_preserved_and_allocated() {
    let m = small();
    let t = ModelTracker::new();
    let keep0 = m.alloc_pages(Order::ZERO).unwrap();
    let keep3 = m.alloc_pages(o(3)).unwrap();
    let lost = m.alloc_pages(o(1)).unwrap();
    m.fill_random(keep0, PAGE, 1).unwrap();
    m.fill_random(keep3, 8 * PAGE, 2).unwrap();
    m.fill_random(lost, 2 * PAGE, 3).unwrap();
    let sums = (m.checksum(keep0, PAGE).unwrap(), m.checksum(keep3, 8 * PAGE).unwrap());
    t.preserve(keep0, Order::ZERO).unwrap();
    t.preserve(keep3, o(3)).unwrap();
    assert_eq!(m.outstanding_pages(), 11);
    let blocks = t.blocks();

    let m = m.kexec(KhoData::default());
    let early = m.alloc_pages(Order::ZERO).unwrap();
    m.write(early, b"early boot data").unwrap();
    let scratch_free = m.alloc_pages(Order::ZERO).unwrap();
    m.free_pages(scratch_free, Order::ZERO);
    m.boot_done(&mut blocks.iter().copied()).unwrap();

    assert_eq!((m.checksum(keep0, PAGE).unwrap(), m.checksum(keep3, 8 * PAGE).unwrap()), sums);
    let mut buf = [0u8; 15];
    m.read(early, &mut buf).unwrap();
    assert_eq!(&buf, b"early boot data");
    assert!(!m.is_poisoned(early));
    for pa in [
        lost,
        lost.checked_add(PAGE).unwrap(),
        scratch_free,
        m.ram_base().checked_add(1 << 20).unwrap(),
        m.ram_end().checked_sub(PAGE).unwrap(),
    ] {
        assert!(m.is_poisoned(pa), "{pa} not poisoned");
    }
    assert!(!m.is_poisoned(keep0));
    assert!(!m.is_poisoned(m.ram_end()));
    let mut byte = [0u8];
    m.read(lost, &mut byte).unwrap();
    assert_eq!(byte[0], POISON_BYTE);
    // Every page is poisoned, preserved or the early allocation.
    let poisoned =
        (0..m.ram_size() / PAGE).filter(|i| m.is_poisoned(m.ram_base().checked_add(i * PAGE).unwrap())).count();
    assert_eq!(poisoned as u64, m.ram_size() / PAGE - 9 - 1);

    // Reserved blocks are not outstanding; freeing one after claiming it
    // makes it free.
    assert_eq!(m.reserved_pages(), 9);
    assert_eq!(m.outstanding_pages(), 1);
    let t2 = ModelTracker::incoming(blocks);
    t2.claim(keep3, o(3)).unwrap();
    let free_before = m.available_pages();
    m.free_pages(keep3, o(3));
    assert_eq!(m.reserved_pages(), 1);
    assert_eq!(m.available_pages(), free_before + 8);
    assert_eq!(m.outstanding_pages(), 1);
    // Pages handed out now are zeroed, whatever they held.
    let pa = m.alloc_pages(Order::ZERO).unwrap();
    assert_eq!(m.checksum(pa, PAGE).unwrap(), zero_sum(PAGE));
}

#[test]
fn boot_done_refuses_bad_blocks_and_changes_nothing() {
    let m = small().kexec(KhoData::default());
    let base = m.ram_base();
    let early = m.alloc_pages(Order::ZERO).unwrap();
    let bad: Vec<Vec<(PhysAddr, Order)>> = vec![
        vec![(base.checked_add(PAGE).unwrap(), o(1))],
        vec![(base.checked_sub(PAGE).unwrap(), Order::ZERO)],
        vec![(m.ram_end(), Order::ZERO)],
        vec![(m.ram_end().checked_sub(PAGE).unwrap(), o(1))],
        vec![(base, o(2)), (base.checked_add(PAGE).unwrap(), Order::ZERO)],
        vec![(early, Order::ZERO)],
        vec![(base, Order::MAX)],
    ];
    for blocks in bad {
        let err = m.boot_done(&mut blocks.iter().copied()).unwrap_err();
        assert!(matches!(err, SimError::Abi(_)), "{blocks:?}: {err}");
        assert!(m.in_early_boot());
    }
    m.write(base, b"x").unwrap();
    m.boot_done(&mut [(base, o(2))].into_iter()).unwrap();
    assert!(!m.is_poisoned(base));
    assert!(m.is_poisoned(base.checked_add(4 * PAGE).unwrap()));
}

#[test]
fn primitive_style_round_trip_with_model_tracker() {
    let m = small();
    let t = ModelTracker::new();
    let p = kho_abi::WithTracker::new(&m, &t);
    let mut blocks = Vec::new();
    for i in 0..20u64 {
        let order = o(i % 3);
        let pa = p.alloc_pages(order).unwrap();
        kho_abi::write_phys(&p, pa, &(i * 0x0101_0101)).unwrap();
        p.preserve(pa, order).unwrap();
        blocks.push((pa, order, i));
    }
    let preserved = t.blocks();
    assert_eq!(preserved.len(), 20);
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut preserved.iter().copied()).unwrap();
    let t2 = ModelTracker::incoming(preserved);
    let p2 = kho_abi::WithTracker::new(&m2, &t2);
    for &(pa, order, i) in &blocks {
        p2.claim(pa, order).unwrap();
        assert_eq!(kho_abi::read_phys::<u64, _>(&p2, pa).unwrap(), i * 0x0101_0101);
        p2.free_pages(pa, order);
    }
    assert_eq!(t2.unclaimed(), vec![]);
    assert_eq!(m2.reserved_pages(), 0);
    assert_eq!(m2.outstanding_pages(), 0);
}

#[test]
fn threads_share_one_machine() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Machine>();
    assert_send_sync::<ModelTracker>();
    let m = small();
    let t = ModelTracker::new();
    let mut all: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..500)
                        .map(|_| {
                            let pa = m.alloc_pages(Order::ZERO).unwrap();
                            t.preserve(pa, Order::ZERO).unwrap();
                            pa.as_u64()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 2000);
    assert_eq!(m.outstanding_pages(), 2000);
    assert_eq!(t.preserved_pages(), 2000);
}

#[test]
fn map_blocks_shows_ram_in_the_given_order() {
    let m = small();
    let a = m.alloc_pages(o(2)).unwrap();
    let b = m.alloc_pages(Order::ZERO).unwrap();
    m.fill_random(a, 4 * PAGE, 10).unwrap();
    m.fill_random(b, PAGE, 11).unwrap();
    let map = m.map_blocks(&[(b, Order::ZERO), (a, o(2))]).unwrap();
    assert_eq!(map.len() as u64, 5 * PAGE);
    let mut expect = vec![0u8; 5 * PAGE_SIZE];
    m.read(b, &mut expect[..PAGE_SIZE]).unwrap();
    m.read(a, &mut expect[PAGE_SIZE..]).unwrap();
    assert!(map[..] == expect[..]);
    // Writes through the machine show through the mapping and back.
    m.write(a, b"through").unwrap();
    assert_eq!(&map[PAGE_SIZE..PAGE_SIZE + 7], b"through");
    // SAFETY: the mapping is live and 5 pages long; nothing else touches b.
    unsafe { map.as_mut_ptr().write(0xee) };
    let mut x = [0u8];
    m.read(b, &mut x).unwrap();
    assert_eq!(x[0], 0xee);
    assert!(m.map_blocks(&[]).unwrap().is_empty());
    assert!(m.map_blocks(&[(a.checked_add(PAGE).unwrap(), o(1))]).is_err());
    assert!(m.map_blocks(&[(m.ram_end(), Order::ZERO)]).is_err());
    drop(map);
    // RAM is untouched by unmapping.
    assert_eq!(m.read(a, &mut x).map(|_| x[0]), Ok(b't'));
}
