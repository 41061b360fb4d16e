//! The C ABI's incoming side, called through the exported `extern "C"`
//! functions of kho-ffi exactly as a C embedder calls them: a platform of
//! callbacks over a kho-sim machine, then `kho_in_import`, the walks, the
//! subtree lookup, restores with well-formed and arbitrary arguments, the
//! listing of unclaimed blocks and `kho_in_finish`. The machine and
//! `kho_data` come from the `track_import` harness (same input format, so
//! that corpus seeds this one); the bytes after the last whole record drive
//! extra restores.
#![no_main]

use std::ffi::{c_int, c_void};

use kho_abi::{Order, PageAlloc, PhysAddr, PhysMem};
use kho_ffi::inc::*;
use kho_ffi::platform::kho_platform;
use kho_ffi::wire::kho_data;
use kho_sim::Machine;

use kho_fuzzing::Machines;
use kho_fuzzing::import as harness;

thread_local! {
    /// The machines, reset after each input.
    static MACHINES: std::cell::RefCell<Machines> = std::cell::RefCell::new(Machines::new());
}

const EINVAL: c_int = -22;
const ENOENT: c_int = -2;

unsafe extern "C" fn phys_to_virt(ctx: *mut c_void, pa: u64, len: u64) -> *mut c_void {
    // SAFETY: `ctx` is the `&Machine` the harness passed, alive for the run.
    let m = unsafe { &*ctx.cast::<Machine>() };
    m.phys_to_virt(PhysAddr::new(pa), len).map_or(std::ptr::null_mut(), |p| p.as_ptr().cast())
}

unsafe extern "C" fn alloc_pages(ctx: *mut c_void, order: u32, pa_out: *mut u64) -> c_int {
    // SAFETY: as in `phys_to_virt`.
    let m = unsafe { &*ctx.cast::<Machine>() };
    let Ok(o) = Order::new(u64::from(order), "order") else { return EINVAL };
    match m.alloc_pages(o) {
        Ok(pa) => {
            // SAFETY: kho-ffi passes a writable `u64`.
            unsafe { *pa_out = pa.as_u64() };
            0
        }
        Err(_) => -12,
    }
}

unsafe extern "C" fn free_pages(ctx: *mut c_void, pa: u64, order: u32) {
    // SAFETY: as in `phys_to_virt`.
    let m = unsafe { &*ctx.cast::<Machine>() };
    if let Ok(o) = Order::new(u64::from(order), "order") {
        m.free_pages(PhysAddr::new(pa), o);
    }
}

unsafe extern "C" fn collect(arg: *mut c_void, pa: u64, order: u32) -> c_int {
    // SAFETY: `arg` is the harness's `Vec`, alive for the call.
    let v = unsafe { &mut *arg.cast::<Vec<(u64, u32)>>() };
    v.push((pa, order));
    0
}

unsafe extern "C" fn count_range(arg: *mut c_void, _pa: u64, len: u64) -> c_int {
    // SAFETY: `arg` is the harness's counter.
    let n = unsafe { &mut *arg.cast::<u64>() };
    *n += len;
    0
}

fn blocks_of(
    f: unsafe extern "C" fn(*const kho_in, kho_ffi::out::kho_block_fn, *mut c_void) -> c_int,
    inc: *mut kho_in,
) -> Vec<(u64, u32)> {
    let mut v: Vec<(u64, u32)> = Vec::new();
    // SAFETY: a live handle, a callback of the right type and its `Vec`.
    let r = unsafe { f(inc, Some(collect), (&raw mut v).cast()) };
    assert_eq!(r, 0, "listing blocks of a live handle");
    v
}

fn run(ms: &mut Machines, data: &[u8]) {
    let Some((machine, d)) = harness::prepare_in(ms, data) else { return };
    let m: &Machine = &machine;
    let platform = kho_platform {
        ctx: std::ptr::from_ref(m).cast_mut().cast(),
        phys_to_virt: Some(phys_to_virt),
        alloc_pages: Some(alloc_pages),
        free_pages: Some(free_pages),
        crosses_node: None,
        max_order: PageAlloc::max_order(m).get(),
    };
    let cd = kho_data {
        fdt_addr: d.fdt_addr,
        fdt_size: d.fdt_size,
        scratch_addr: d.scratch_addr,
        scratch_size: d.scratch_size,
    };
    let mut inc: *mut kho_in = std::ptr::null_mut();
    // SAFETY: valid platform, data and out-pointers; the machine outlives
    // the handle.
    let r = unsafe { kho_in_import(&platform, &cd, &mut inc, std::ptr::null_mut()) };
    if r != 0 {
        assert!(r < 0 && inc.is_null(), "a failed import returns -errno and no handle");
        assert_eq!(m.outstanding_pages(), 0, "a failed import left pages allocated");
        return;
    }
    let reserved = blocks_of(kho_in_reserved, inc);
    m.boot_done(
        &mut reserved.iter().map(|&(pa, o)| (PhysAddr::new(pa), Order::new(u64::from(o), "o").expect("order"))),
    )
    .expect("reserved blocks are RAM and disjoint");
    let blocks = blocks_of(kho_in_walk_blocks, inc);
    let mut bytes = 0u64;
    // SAFETY: a live handle and a callback with its counter.
    assert_eq!(unsafe { kho_in_walk_ranges(inc, Some(count_range), (&raw mut bytes).cast()) }, 0);
    let block_bytes: u64 = blocks.iter().map(|&(_, o)| (kho_abi::PAGE_SIZE as u64) << o).sum();
    assert_eq!(bytes, block_bytes, "ranges cover exactly the blocks");
    let mut stats = std::mem::MaybeUninit::<kho_in_stats>::zeroed();
    // SAFETY: a live handle and a writable struct.
    assert_eq!(unsafe { kho_in_get_stats(inc, stats.as_mut_ptr()) }, 0);
    let mut buf = [0i8; 64];
    let mut len = 0usize;
    // SAFETY: a live handle, a buffer of `buf.len()` bytes, a writable length.
    assert_eq!(unsafe { kho_in_compatible(inc, buf.as_mut_ptr(), buf.len(), &mut len) }, 0);
    let (mut pa, mut size) = (0u64, 0u64);
    // SAFETY: a live handle, a NUL-terminated name and writable outputs.
    let r = unsafe { kho_retrieve_subtree(inc, c"fuzz".as_ptr(), &mut pa, &mut size) };
    assert!(r == 0 || r == ENOENT || r == EINVAL, "retrieve_subtree: {r}");
    // NULL arguments are refused, not followed.
    // SAFETY: NULLs are allowed and refused.
    assert_eq!(unsafe { kho_retrieve_subtree(inc, std::ptr::null(), &mut pa, &mut size) }, EINVAL);
    // SAFETY: a NULL handle is refused.
    assert_eq!(unsafe { kho_restore_folio(std::ptr::null_mut(), 0, 0) }, EINVAL);
    // Arbitrary restores from the input's tail: each succeeds only on a
    // preserved block, and what it takes is given back at the end.
    let mut restored: Vec<(u64, u32)> = Vec::new();
    for w in data.rchunks_exact(9).take(16) {
        let pa = u64::from_le_bytes(w[..8].try_into().expect("8 bytes")) & !0xfff;
        let o = u32::from(w[8] % 12);
        // SAFETY: a live handle.
        if unsafe { kho_restore_folio(inc, pa, o) } == 0 {
            assert!(blocks.contains(&(pa, o)), "restored {pa:#x} order {o}, never walked");
            restored.push((pa, o));
        }
    }
    for &(pa, o) in &blocks {
        if restored.contains(&(pa, o)) {
            continue;
        }
        // SAFETY: a live handle.
        assert_eq!(unsafe { kho_restore_folio(inc, pa, o) }, 0, "a walked block restores");
        // SAFETY: a live handle.
        assert_eq!(unsafe { kho_restore_folio(inc, pa, o) }, ENOENT, "a block restores once");
        restored.push((pa, o));
    }
    assert!(blocks_of(kho_in_unclaimed, inc).is_empty());
    // SAFETY: a live handle nothing else uses.
    unsafe { kho_in_finish(inc) };
    for (pa, o) in restored {
        m.free_pages(PhysAddr::new(pa), Order::new(u64::from(o), "o").expect("order"));
    }
    assert_eq!(m.reserved_pages(), 0);
    assert_eq!(m.outstanding_pages(), 0);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| MACHINES.with_borrow_mut(|ms| run(ms, data)));
