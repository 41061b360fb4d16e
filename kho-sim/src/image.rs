//! Machine images: ELF64 core files, like QEMU's `dump-guest-memory`.
//!
//! Layout written: the ELF header, the program headers (one `PT_NOTE` when
//! there is a `kho_data` to save, then one `PT_LOAD` per RAM range, with the
//! PA in both `p_paddr` and `p_vaddr`), the note (`"KHO"`, type 1, the
//! 32-byte `struct kho_data`), then RAM from the next page boundary. RAM
//! pages that hold only zeros are not written: the file is sparse, so an
//! image of mostly untouched memory takes little disk.
//!
//! Reading accepts any little-endian ELF64 core whose `PT_LOAD` segments are
//! page aligned and disjoint (`p_filesz < p_memsz` means zero fill), and
//! reports every defect as [`SimError::Image`] with the file offset.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use kho_abi::handover::{NOTE_NAME, NOTE_TYPE};
use kho_abi::{KhoData, PAGE_SIZE};
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, NoteHeader64, ProgramHeader64};
use object::endian::{U16, U32, U64};
use object::read::ReadCache;

use crate::config::MachineConfig;
use crate::elf::{CoreLoad, KhoNote, data_ranges, read_headers};
use crate::error::SimError;
use crate::machine::Machine;
use crate::ram::{CHUNK, Ram};

const PAGE: u64 = PAGE_SIZE as u64;
const EHDR_SIZE: u64 = size_of::<FileHeader64<LE>>() as u64;
const PHDR_SIZE: u64 = size_of::<ProgramHeader64<LE>>() as u64;
const NHDR_SIZE: u64 = size_of::<NoteHeader64<LE>>() as u64;
/// `"KHO"` with its NUL, padded to 4 bytes.
const NOTE_NAME_FIELD: [u8; 4] = *b"KHO\0";
const KHO_DATA_SIZE: u64 = size_of::<KhoData>() as u64;
/// The largest RAM span a loaded image may describe (1 TiB): the memfd and
/// the mapping are sparse, but an absurd span from a corrupt image should
/// fail cleanly rather than exhaust the address space.
const MAX_SPAN: u64 = 1 << 40;

const _: () = assert!(EHDR_SIZE == 64 && PHDR_SIZE == 56 && NHDR_SIZE == 12);
const _: () = assert!(NOTE_NAME.len() + 1 == NOTE_NAME_FIELD.len());

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

fn image_err(what: &'static str, offset: u64) -> SimError {
    SimError::Image { what, offset }
}

/// Runs of pages in `buf` that hold a non-zero byte, as `(start, end)`
/// offsets; the last page may be short.
fn nonzero_runs(buf: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, page) in buf.chunks(PAGE_SIZE).enumerate() {
        // A slice comparison is a `memcmp`, fast even in debug builds.
        if page == &ZERO_PAGE[..page.len()] {
            continue;
        }
        let (s, e) = (i * PAGE_SIZE, i * PAGE_SIZE + page.len());
        match runs.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => runs.push((s, e)),
        }
    }
    runs
}

impl Machine {
    /// Saves RAM and [`kho_data`](Machine::kho_data) (if any) as an image.
    pub fn save_image(&self, path: &Path) -> Result<(), SimError> {
        self.save_image_with(path, self.kho_data().as_ref())
    }

    /// Saves RAM and `kho_data` (for a machine about to kexec, the handover
    /// it would pass) as an image; no note when `kho_data` is `None`.
    pub fn save_image_with(&self, path: &Path, kho_data: Option<&KhoData>) -> Result<(), SimError> {
        let ram = self.ram();
        let segments = ram.segments();
        let phnum = segments.len() + usize::from(kho_data.is_some());
        let phnum16 = u16::try_from(phnum).ok().filter(|&n| n < elf::PN_XNUM);
        let phnum16 = phnum16.ok_or(SimError::Config { what: "too many RAM ranges for one image" })?;
        let note_off = EHDR_SIZE + PHDR_SIZE * phnum as u64;
        let note_len = if kho_data.is_some() { NHDR_SIZE + NOTE_NAME_FIELD.len() as u64 + KHO_DATA_SIZE } else { 0 };
        let data_off = (note_off + note_len).next_multiple_of(PAGE);

        let mut head = Vec::with_capacity(data_off as usize);
        let ehdr = FileHeader64::<LE> {
            e_ident: elf::Ident {
                magic: elf::ELFMAG,
                class: elf::ELFCLASS64,
                data: elf::ELFDATA2LSB,
                version: elf::EV_CURRENT,
                os_abi: elf::ELFOSABI_NONE,
                abi_version: 0,
                padding: [0; 7],
            },
            e_type: U16::new(LE, elf::ET_CORE),
            e_machine: U16::new(LE, elf::EM_X86_64),
            e_version: U32::new(LE, u32::from(elf::EV_CURRENT)),
            e_entry: U64::new(LE, 0),
            e_phoff: U64::new(LE, EHDR_SIZE),
            e_shoff: U64::new(LE, 0),
            e_flags: U32::new(LE, 0),
            e_ehsize: U16::new(LE, EHDR_SIZE as u16),
            e_phentsize: U16::new(LE, PHDR_SIZE as u16),
            e_phnum: U16::new(LE, phnum16),
            e_shentsize: U16::new(LE, 0),
            e_shnum: U16::new(LE, 0),
            e_shstrndx: U16::new(LE, 0),
        };
        head.extend_from_slice(object::pod::bytes_of(&ehdr));
        let phdr = |p_type, p_flags, offset, addr, size, align| ProgramHeader64::<LE> {
            p_type: U32::new(LE, p_type),
            p_flags: U32::new(LE, p_flags),
            p_offset: U64::new(LE, offset),
            p_vaddr: U64::new(LE, addr),
            p_paddr: U64::new(LE, addr),
            p_filesz: U64::new(LE, size),
            p_memsz: U64::new(LE, size),
            p_align: U64::new(LE, align),
        };
        if kho_data.is_some() {
            head.extend_from_slice(object::pod::bytes_of(&phdr(elf::PT_NOTE, 0, note_off, 0, note_len, 4)));
        }
        let mut file_off = data_off;
        let mut places = Vec::with_capacity(segments.len());
        for &(start, end) in segments {
            let p = phdr(elf::PT_LOAD, elf::PF_R | elf::PF_W, file_off, start, end - start, PAGE);
            head.extend_from_slice(object::pod::bytes_of(&p));
            places.push((start - ram.base(), end - ram.base(), file_off));
            file_off += end - start;
        }
        if let Some(d) = kho_data {
            let nhdr = NoteHeader64::<LE> {
                n_namesz: U32::new(LE, NOTE_NAME_FIELD.len() as u32),
                n_descsz: U32::new(LE, KHO_DATA_SIZE as u32),
                n_type: U32::new(LE, NOTE_TYPE),
            };
            head.extend_from_slice(object::pod::bytes_of(&nhdr));
            head.extend_from_slice(&NOTE_NAME_FIELD);
            head.extend_from_slice(zerocopy_bytes(d));
        }

        let mut file = File::create(path)?;
        file.write_all(&head)?;
        file.set_len(file_off)?;
        let mut buf = vec![0u8; CHUNK];
        for (mem_start, mem_end, seg_file_off) in places {
            for (s, e) in ram.data_ranges(mem_start, mem_end)? {
                let (s, e) = ((s / PAGE * PAGE).max(mem_start), e.next_multiple_of(PAGE).min(mem_end));
                let mut pos = s;
                while pos < e {
                    let n = (e - pos).min(CHUNK as u64) as usize;
                    ram.pread_all(&mut buf[..n], pos)?;
                    for (a, b) in nonzero_runs(&buf[..n]) {
                        file.write_all_at(&buf[a..b], seg_file_off + (pos - mem_start) + a as u64)?;
                    }
                    pos += n as u64;
                }
            }
        }
        file.sync_data()?;
        Ok(())
    }

    /// Loads an image: RAM is the `PT_LOAD` segments (base = the lowest
    /// `p_paddr`; PAs between segments are not RAM), `kho_data` comes from
    /// the `"KHO"` note. The machine is in early boot, as right after kexec:
    /// it allocates only from `cfg.scratch`, which must lie inside the
    /// loaded RAM. `cfg.ram_base` and `cfg.ram_size` are ignored (the
    /// machine's [`config`](Machine::config) reports the loaded ones).
    pub fn load_image(path: &Path, cfg: MachineConfig) -> Result<Machine, SimError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let image = parse_headers(&file, file_len)?;
        let ram = Ram::new(image.loads.iter().map(|l| (l.paddr, l.paddr + l.memsz)).collect())?;
        for l in &image.loads {
            if l.filesz > 0 {
                copy_in(&file, &ram, l)?;
            }
        }
        Machine::early_boot(cfg, ram, image.kho_data)
    }
}

fn zerocopy_bytes(d: &KhoData) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(d)
}

/// What the headers of an image say, checked for a simulated machine.
#[derive(Debug)]
struct Image {
    loads: Vec<CoreLoad>,
    kho_data: Option<KhoData>,
}

/// Reads the headers through [`read_headers`] (only the headers and notes
/// are read from the file), then asks of the RAM what a machine needs:
/// page-aligned, non-empty, disjoint segments, not at PA 0, spanning at
/// most [`MAX_SPAN`]; and a well-formed KHO note if there is one.
fn parse_headers(file: &File, file_len: u64) -> Result<Image, SimError> {
    let cache = ReadCache::new(file);
    let h = read_headers(&cache, file_len, false).map_err(|e| image_err(e.fault.what(), e.offset))?;
    let kho_data = match h.note {
        KhoNote::Absent => None,
        KhoNote::Present(d) => Some(d),
        KhoNote::Malformed(e) => return Err(image_err(e.fault.what(), e.offset)),
    };
    let mut loads = h.loads;
    if let Some(l) = loads.iter().find(|l| l.paddr % PAGE != 0 || l.memsz == 0 || l.memsz % PAGE != 0) {
        return Err(image_err("PT_LOAD not page aligned or empty", l.at));
    }
    loads.sort_unstable_by_key(|l| l.paddr);
    let (Some(first), Some(last)) = (loads.first(), loads.last()) else {
        return Err(image_err("no PT_LOAD segment", h.phoff));
    };
    if let Some(w) = loads.windows(2).find(|w| w[0].paddr + w[0].memsz > w[1].paddr) {
        return Err(image_err("PT_LOAD segments overlap", w[1].at));
    }
    if last.paddr + last.memsz - first.paddr > MAX_SPAN {
        return Err(image_err("RAM spans more than 1 TiB", last.at));
    }
    if first.paddr == 0 {
        return Err(image_err("RAM at physical address 0 is not supported", first.at));
    }
    Ok(Image { loads, kho_data })
}

/// Copies the file data of `load` into RAM, skipping holes and zero pages.
fn copy_in(file: &File, ram: &Ram, load: &CoreLoad) -> Result<(), SimError> {
    let (start, end) = (load.offset, load.offset + load.filesz);
    let mem_base = load.paddr - ram.base();
    let mut buf = vec![0u8; CHUNK];
    for (s, e) in data_ranges(file.as_fd(), start, end)? {
        // Whole pages of the segment, so that zero pages are skipped whole.
        let s = start + (s - start) / PAGE * PAGE;
        let e = (start + (e - start).next_multiple_of(PAGE)).min(end);
        let mut pos = s;
        while pos < e {
            let n = (e - pos).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)?;
            for (a, b) in nonzero_runs(&buf[..n]) {
                ram.pwrite_all(&buf[a..b], mem_base + (pos - start) + a as u64)?;
            }
            pos += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_nonzero_pages() {
        let mut buf = vec![0u8; 5 * PAGE_SIZE + 10];
        buf[PAGE_SIZE] = 1;
        buf[2 * PAGE_SIZE + 7] = 1;
        buf[5 * PAGE_SIZE + 9] = 1;
        assert_eq!(nonzero_runs(&buf), vec![(PAGE_SIZE, 3 * PAGE_SIZE), (5 * PAGE_SIZE, 5 * PAGE_SIZE + 10)]);
        assert_eq!(nonzero_runs(&[0; 100]), vec![]);
    }
}
