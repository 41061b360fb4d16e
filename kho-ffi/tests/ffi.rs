//! The exports called from Rust as a C embedder would call them, on a
//! platform of callbacks over a heap buffer: a handover with preserves from
//! several threads on one handle, and the restores it allows.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::c_void;
use std::sync::Mutex;

use kho_ffi::error::{KHO_ENOENT, KHO_OK};
use kho_ffi::inc::*;
use kho_ffi::out::*;
use kho_ffi::platform::kho_platform;
use kho_ffi::wire::{KHO_PAGE_SIZE, kho_data, kho_scratch};

const BASE: u64 = 0x2_0000_0000;
const PAGES: u64 = 4096; // 16 MiB
const PAGE: u64 = KHO_PAGE_SIZE;

/// RAM at `BASE`, with a bump-and-free-list page allocator behind a lock
/// (the callbacks may run on several threads at once).
struct Ram {
    ptr: *mut u8,
    used: Mutex<Vec<bool>>,
}

impl Ram {
    fn layout() -> Layout {
        Layout::from_size_align((PAGES * PAGE) as usize, 1 << 22).unwrap()
    }

    fn new() -> Box<Ram> {
        // SAFETY: a non-zero layout.
        let ptr = unsafe { alloc_zeroed(Ram::layout()) };
        assert!(!ptr.is_null());
        Box::new(Ram { ptr, used: Mutex::new(vec![false; PAGES as usize]) })
    }

    fn platform(&self) -> kho_platform {
        kho_platform {
            ctx: self as *const Ram as *mut c_void,
            phys_to_virt: Some(phys_to_virt),
            alloc_pages: Some(alloc_pages),
            free_pages: Some(free_pages),
            crosses_node: None,
            max_order: 10,
        }
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, Ram::layout()) }
    }
}

unsafe extern "C" fn phys_to_virt(ctx: *mut c_void, pa: u64, len: u64) -> *mut c_void {
    // SAFETY: `ctx` is the `Ram` the platform was made from, alive.
    let ram = unsafe { &*(ctx as *const Ram) };
    match pa.checked_sub(BASE) {
        Some(off) if off <= PAGES * PAGE && len <= PAGES * PAGE - off => {
            // SAFETY: inside the buffer (checked).
            unsafe { ram.ptr.add(off as usize).cast() }
        }
        _ => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn alloc_pages(ctx: *mut c_void, order: u32, pa_out: *mut u64) -> i32 {
    // SAFETY: as in `phys_to_virt`.
    let ram = unsafe { &*(ctx as *const Ram) };
    let n = 1usize << order;
    let mut used = ram.used.lock().unwrap();
    let Some(first) = (0..used.len()).step_by(n).find(|&i| used[i..i + n].iter().all(|u| !u)) else {
        return -12;
    };
    used[first..first + n].fill(true);
    // SAFETY: inside the buffer; the pages are ours now.
    unsafe { std::ptr::write_bytes(ram.ptr.add(first * PAGE as usize), 0, n * PAGE as usize) };
    // SAFETY: kho passes a valid out pointer.
    unsafe { *pa_out = BASE + first as u64 * PAGE };
    0
}

unsafe extern "C" fn free_pages(ctx: *mut c_void, pa: u64, order: u32) {
    // SAFETY: as in `phys_to_virt`.
    let ram = unsafe { &*(ctx as *const Ram) };
    let first = ((pa - BASE) / PAGE) as usize;
    ram.used.lock().unwrap()[first..first + (1 << order)].fill(false);
}

fn alloc(ram: &Ram, order: u32) -> u64 {
    let mut pa = 0;
    // SAFETY: a live ram and a valid out pointer.
    assert_eq!(unsafe { alloc_pages(ram as *const Ram as *mut c_void, order, &mut pa) }, 0);
    pa
}

unsafe extern "C" fn count(arg: *mut c_void, _pa: u64, order: u32) -> i32 {
    // SAFETY: the tests pass a `u64`.
    unsafe { *(arg as *mut u64) += 1 << order };
    0
}

#[test]
fn preserves_from_threads_restore_once() {
    let ram = Ram::new();
    let p = ram.platform();
    let scratch = kho_scratch { addr: BASE + (PAGES - 256) * PAGE, size: 256 * PAGE };
    ram.used.lock().unwrap()[(PAGES - 256) as usize..].fill(true);
    let mut out = std::ptr::null_mut();
    let composite = kho_root_compat::KHO_ROOT_COMPOSITE as u32;
    // SAFETY: valid arguments.
    let rc = unsafe { kho_out_new(&p, &scratch, 1, composite, &mut out, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    let folios: Vec<Vec<u64>> = (0..4).map(|_| (0..200).map(|_| alloc(&ram, 0)).collect()).collect();
    let handle = out as usize;
    std::thread::scope(|s| {
        for mine in &folios {
            s.spawn(move || {
                for &pa in mine {
                    // SAFETY: preserving is allowed from several threads on
                    // one handle, which lives until after the scope.
                    assert_eq!(unsafe { kho_preserve_folio(handle as *mut kho_out, pa, 0) }, KHO_OK);
                }
            });
        }
    });
    let mut pages = 0u64;
    // SAFETY: a live handle, a callback taking a `u64`.
    assert_eq!(unsafe { kho_out_walk_blocks(out, Some(count), (&mut pages as *mut u64).cast()) }, 0);
    assert_eq!(pages, 800 + 1); // and the root FDT page
    let mut data = kho_data::default();
    // SAFETY: a live handle, consumed here.
    assert_eq!(unsafe { kho_out_finish(out, &mut data) }, 0);

    let mut inc = std::ptr::null_mut();
    // SAFETY: valid arguments; the handover lies in the same RAM.
    assert_eq!(unsafe { kho_in_import(&p, &data, &mut inc, std::ptr::null_mut()) }, 0);
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: a live handle, a buffer of 64 bytes.
    assert_eq!(unsafe { kho_in_compatible(inc, buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) }, 0);
    // SAFETY: NUL-terminated by the call.
    let compat = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(compat.to_str().unwrap(), "kho-v4;array-v1;block-v1;radix-v1;vmalloc-v1");
    std::thread::scope(|s| {
        for mine in &folios {
            let handle = inc as usize;
            s.spawn(move || {
                for &pa in mine {
                    // SAFETY: restoring is allowed from several threads.
                    assert_eq!(unsafe { kho_restore_folio(handle as *mut kho_in, pa, 0) }, KHO_OK);
                    // SAFETY: as above.
                    assert_eq!(unsafe { kho_restore_folio(handle as *mut kho_in, pa, 0) }, -KHO_ENOENT);
                }
            });
        }
    });
    let mut left = 0u64;
    // SAFETY: a live handle, a callback taking a `u64`.
    assert_eq!(unsafe { kho_in_unclaimed(inc, Some(count), (&mut left as *mut u64).cast()) }, 0);
    assert_eq!(left, 0);
    // SAFETY: a live handle, consumed here.
    unsafe { kho_in_finish(inc) };
    for pa in folios.iter().flatten() {
        // SAFETY: restored, so ours to free.
        unsafe { free_pages(&*ram as *const Ram as *mut c_void, *pa, 0) };
    }
    // Only the scratch area (marked at the start) and the scratch array
    // page written by `finish` stay in use: the tree and FDT are freed.
    let used = ram.used.lock().unwrap().iter().filter(|u| **u).count();
    assert_eq!(used, 256 + 1);
}
