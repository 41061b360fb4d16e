//! `Machine::reset`: after any use, the machine is indistinguishable from a
//! new one of the same configuration, and lazy poisoning shows the same
//! bytes as an immediate fill.

use kho_abi::{Claim, KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, Preserve, WithTracker};
use kho_sim::{Machine, MachineConfig, ModelTracker, POISON_BYTE};

const PAGE: u64 = PAGE_SIZE as u64;
const BASE: u64 = 0x3_0000_0000;

fn o(n: u64) -> Order {
    Order::new(n, "test").unwrap()
}

/// 2 MiB with a 256 KiB scratch area in the middle, so that the free
/// lists around it are not trivial.
fn cfg() -> MachineConfig {
    let mut c = MachineConfig::with_ram(PhysAddr::new(BASE), 2 << 20);
    c.scratch = vec![KhoScratch { addr: BASE + (1 << 20), size: 256 << 10 }];
    c.max_order = o(6);
    c
}

/// Every byte of RAM.
fn ram(m: &Machine) -> Vec<u8> {
    let mut buf = vec![0u8; m.ram_size() as usize];
    m.read(m.ram_base(), &mut buf).unwrap();
    buf
}

/// Everything the API tells about the allocator, then (consuming it) the
/// blocks every allocation returns until RAM is exhausted, with a mix of
/// orders, each checked zeroed.
fn observe(m: &Machine) -> (Vec<String>, Vec<Option<PhysAddr>>) {
    let facts = vec![
        format!("{:?}", m.kho_data()),
        format!("{}", m.in_early_boot()),
        format!("{}", m.outstanding_pages()),
        format!("{}", m.reserved_pages()),
        format!("{}", m.available_pages()),
        format!("{}", m.allocation_count()),
        format!("{:?}", m.allocated_blocks()),
    ];
    let mut got = Vec::new();
    for i in 0..2000u64 {
        let order = o([0, 3, 1, 0, 6, 2][(i % 6) as usize]);
        let pa = m.alloc_pages(order).ok();
        if let Some(pa) = pa {
            let mut buf = vec![1u8; (order.pages() * PAGE) as usize];
            m.read(pa, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0), "block {pa} of order {order} not zeroed");
        }
        got.push(pa);
    }
    assert!(got.iter().any(Option::is_none), "RAM exhausted");
    (facts, got)
}

/// Uses `m` every way that changes state: writes, allocations, failure
/// injection, preservation, kexec, boot, claims, frees, a mapping, poison
/// read through some paths and left unread elsewhere.
fn churn(m: Machine) -> Machine {
    let t = ModelTracker::new();
    let mut kept = Vec::new();
    for (i, order) in [0u64, 2, 0, 5, 1].into_iter().enumerate() {
        let pa = m.alloc_pages(o(order)).unwrap();
        m.fill_random(pa, o(order).pages() * PAGE, i as u64).unwrap();
        if i % 2 == 0 {
            t.preserve(pa, o(order)).unwrap();
            kept.push((pa, o(order)));
        }
    }
    m.fill_random(PhysAddr::new(BASE + (1 << 20)), 8 * PAGE, 99).unwrap(); // scratch
    m.fail_nth_allocation(3);
    let lost = m.alloc_pages(o(0)).unwrap();
    m.write(lost, b"lost").unwrap();

    let m = m.kexec(KhoData { fdt_addr: BASE + PAGE, fdt_size: PAGE, scratch_addr: 0, scratch_size: 0 });
    let early = m.alloc_pages(o(1)).unwrap();
    m.write(early, &[7; 100]).unwrap();
    m.boot_done(&mut t.blocks().into_iter()).unwrap();
    let t = ModelTracker::incoming(t.blocks());
    let p = WithTracker::new(&m, &t);
    // Claim and free one preserved block; keep another claimed.
    p.claim(kept[0].0, kept[0].1).unwrap();
    m.free_pages(kept[0].0, kept[0].1);
    p.claim(kept[1].0, kept[1].1).unwrap();
    // Poison read in one page, left pending in the others.
    assert!(m.is_poisoned(lost));
    let after = m.alloc_pages(o(2)).unwrap();
    m.write(after, b"booted").unwrap();
    let map = m.map_same_order(&[after], o(2)).unwrap();
    assert_eq!(&map[..6], b"booted");
    drop(map);
    m.fail_allocations_from(2);
    m
}

#[test]
fn a_reset_machine_is_a_new_machine() {
    let fresh = Machine::new(cfg()).unwrap();
    let fresh_ram = ram(&fresh);
    let mut m = churn(Machine::new(cfg()).unwrap());
    assert_ne!(ram(&m), fresh_ram);
    m.reset().unwrap();
    assert_eq!(m.config(), fresh.config());
    assert!(ram(&m) == fresh_ram, "RAM differs from a new machine's after reset");
    assert!(!m.is_poisoned(PhysAddr::new(BASE + 64 * PAGE)));
    assert_eq!(observe(&m), observe(&fresh));

    // Again, after the allocator was exhausted and with the same churn: a
    // reset machine reused many times stays a new machine.
    for _ in 0..3 {
        m.reset().unwrap();
        m = churn(m);
        m.reset().unwrap();
        assert!(ram(&m) == fresh_ram);
        assert_eq!(observe(&m), observe(&Machine::new(cfg()).unwrap()));
    }
}

#[test]
fn a_machine_used_after_reset_behaves_as_a_new_one() {
    // The same churn on a new machine and on a reset one ends in the same
    // RAM and the same allocator.
    let a = churn(Machine::new(cfg()).unwrap());
    let mut b = churn(Machine::new(cfg()).unwrap());
    b.reset().unwrap();
    let b = churn(b);
    assert!(ram(&a) == ram(&b));
    // Failure injection was set by the churn: clear it on both before
    // comparing the allocators.
    a.clear_failures();
    b.clear_failures();
    assert_eq!(observe(&a), observe(&b));
}

#[test]
fn lazy_poison_reads_as_poison_everywhere() {
    let m = Machine::new(cfg()).unwrap();
    let t = ModelTracker::new();
    let kept = m.alloc_pages(o(0)).unwrap();
    m.write(kept, b"kept").unwrap();
    t.preserve(kept, o(0)).unwrap();
    let lost = m.alloc_pages(o(3)).unwrap();
    m.fill_random(lost, 8 * PAGE, 5).unwrap();
    let m = m.kexec(KhoData::default());
    m.boot_done(&mut t.blocks().into_iter()).unwrap();
    // Through a pointer (read), through the memfd (is_poisoned, checksum,
    // a mapping), a partial write, and an allocation over poison.
    let mut buf = vec![0u8; PAGE as usize];
    m.read(PhysAddr::new(lost.as_u64() + PAGE), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == POISON_BYTE));
    assert!(m.is_poisoned(PhysAddr::new(lost.as_u64() + 2 * PAGE)));
    let poison_sum = {
        let c = Machine::new(cfg()).unwrap();
        let pa = c.alloc_pages(o(0)).unwrap();
        c.write(pa, &vec![POISON_BYTE; PAGE as usize]).unwrap();
        c.checksum(pa, PAGE).unwrap()
    };
    assert_eq!(m.checksum(PhysAddr::new(lost.as_u64() + 3 * PAGE), PAGE).unwrap(), poison_sum);
    let map = m.map_same_order(&[PhysAddr::new(lost.as_u64() + 4 * PAGE)], o(0)).unwrap();
    assert!(map.iter().all(|&b| b == POISON_BYTE));
    drop(map);
    m.write(PhysAddr::new(lost.as_u64() + 5 * PAGE + 8), b"x").unwrap();
    m.read(PhysAddr::new(lost.as_u64() + 5 * PAGE), &mut buf).unwrap();
    assert_eq!(buf[8], b'x');
    assert!(buf[..8].iter().chain(&buf[9..]).all(|&b| b == POISON_BYTE));
    let mut word = [0u8; 4];
    m.read(kept, &mut word).unwrap();
    assert_eq!(&word, b"kept");
    // Every page not kept reads as poison, wherever it was not allocated.
    let all = ram(&m);
    for (i, page) in all.chunks(PAGE as usize).enumerate() {
        let pa = BASE + i as u64 * PAGE;
        if pa == kept.as_u64() || pa == lost.as_u64() + 5 * PAGE {
            continue;
        }
        assert!(page.iter().all(|&b| b == POISON_BYTE), "page {pa:#x} is not poison");
    }
    // Allocating over poison gives zeroes.
    let fresh = m.alloc_pages(o(3)).unwrap();
    m.read(fresh, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}
