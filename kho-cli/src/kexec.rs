//! The running Linux system's side of `kho kexec`: its memory map and
//! RSDP, `kexec_load(2)` and the reboot into the loaded kernel.

use std::fs;
use std::io;
use std::path::Path;

use kho_handoff::x86::boot_params::{E820Entry, rsdp_of};

use crate::produce::{Produced, e820_from_iomem, e820_type};

/// `kexec_load`'s architecture flag for x86-64 (`EM_X86_64 << 16`).
pub const KEXEC_ARCH_X86_64: u64 = 62 << 16;

/// The firmware memory map: `/sys/firmware/memmap` if the kernel has it,
/// else the top level of `/proc/iomem` (whose addresses only root sees).
pub fn memory_map() -> io::Result<Vec<E820Entry>> {
    let dir = Path::new("/sys/firmware/memmap");
    if dir.is_dir() {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let p = entry?.path();
            let read = |f: &str| fs::read_to_string(p.join(f)).map(|s| s.trim().to_string());
            let num = |s: String| u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(io::Error::other);
            let (start, end, kind) = (num(read("start")?)?, num(read("end")?)?, read("type")?);
            if let Some(kind) = e820_type(&kind)
                && end >= start
            {
                out.push(E820Entry { addr: start, size: end - start + 1, kind });
            }
        }
        out.sort_by_key(|e| e.addr);
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let map = e820_from_iomem(&fs::read_to_string("/proc/iomem")?);
    if map.iter().all(|e| e.addr == 0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "/proc/iomem shows no addresses: reading the memory map needs root",
        ));
    }
    Ok(map)
}

/// The ACPI RSDP's PA as the running kernel got it (its zero page in
/// sysfs, or the EFI system table), if it states one.
pub fn rsdp() -> Option<u64> {
    if let Ok(zp) = fs::read("/sys/kernel/boot_params/data")
        && let Some(pa) = rsdp_of(&zp)
    {
        return Some(pa);
    }
    let systab = fs::read_to_string("/sys/firmware/efi/systab").ok()?;
    let find = |key: &str| {
        systab
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    };
    find("ACPI20=").or_else(|| find("ACPI="))
}

/// Why the kernel refused to load.
#[derive(Debug)]
pub struct LoadError {
    /// The call.
    pub call: &'static str,
    /// Its error.
    pub err: io::Error,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.err)?;
        if self.err.raw_os_error() == Some(1) {
            write!(f, " (kexec_load needs CAP_SYS_BOOT and a kernel not in lockdown)")?;
        }
        Ok(())
    }
}

/// Loads the plan's segments with `kexec_load(2)`, entering at the entry
/// stub. Nothing runs until [`exec`].
#[cfg(target_os = "linux")]
pub fn load(p: &Produced) -> Result<(), LoadError> {
    #[repr(C)]
    struct KexecSegment {
        buf: *const libc::c_void,
        bufsz: libc::size_t,
        mem: libc::c_ulong,
        memsz: libc::size_t,
    }
    let segs: Vec<KexecSegment> = p
        .segments
        .iter()
        .map(|s| KexecSegment {
            buf: s.data.as_ptr().cast(),
            bufsz: s.data.len(),
            mem: s.mem as libc::c_ulong,
            memsz: s.memsz as libc::size_t,
        })
        .collect();
    // SAFETY: kexec_load(2) reads `segs.len()` segment descriptors from
    // `segs`, and `bufsz` bytes from each `buf`; every `buf` points into a
    // `Vec` of `p.segments` that outlives the call, with exactly `bufsz`
    // bytes, and `segs` itself is alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            p.entry as libc::c_ulong,
            segs.len() as libc::c_ulong,
            segs.as_ptr(),
            KEXEC_ARCH_X86_64 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(LoadError { call: "kexec_load", err: io::Error::last_os_error() });
    }
    Ok(())
}

/// Loading needs Linux.
#[cfg(not(target_os = "linux"))]
pub fn load(_p: &Produced) -> Result<(), LoadError> {
    Err(LoadError { call: "kexec_load", err: io::Error::other("kexec_load exists only on Linux") })
}

/// Reboots into the loaded kernel; returns only on failure.
#[cfg(target_os = "linux")]
pub fn exec() -> LoadError {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with a documented command; it returns only on failure.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    LoadError { call: "reboot(LINUX_REBOOT_CMD_KEXEC)", err: io::Error::last_os_error() }
}

/// Rebooting needs Linux.
#[cfg(not(target_os = "linux"))]
pub fn exec() -> LoadError {
    LoadError { call: "reboot", err: io::Error::other("kexec exists only on Linux") }
}
