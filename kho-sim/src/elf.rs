//! The one reader of machine-image headers: an ELF64 core file's header,
//! its `PT_LOAD` segments and its `"KHO"` note (type 1, `struct
//! kho_data`). [`Machine::load_image`](crate::Machine::load_image) and the
//! `kho` command line both read images through [`read_headers`]; each then
//! applies its own policy to the segments (the simulator wants page-aligned,
//! disjoint RAM; the command line also takes QEMU dumps and
//! `/proc/kcore`).
//!
//! The reader works on anything `object` can read from
//! ([`ReadRef`]): a mapped file, the first bytes of one, or a
//! [`ReadCache`](object::read::ReadCache) over a [`File`](std::fs::File)
//! that reads only the headers and notes. Little-endian ELF64 `ET_CORE`
//! only; extended program header numbering (`PN_XNUM`) is handled by
//! `object`.
//!
//! ```
//! use kho_sim::elf::{KhoNote, read_headers};
//! use kho_sim::{Machine, MachineConfig};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let dir = std::env::temp_dir().join(format!("kho-sim-elf-doc-{}", std::process::id()));
//! m.save_image(&dir)?;
//! let bytes = std::fs::read(&dir)?;
//! std::fs::remove_file(&dir)?;
//! let h = read_headers(&bytes[..], bytes.len() as u64, false)?;
//! assert_eq!(h.loads.len(), 1);
//! assert_eq!(h.loads[0].paddr, m.ram_base().as_u64());
//! assert_eq!(h.note, KhoNote::Absent);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::BorrowedFd;

use kho_abi::KhoData;
use kho_abi::handover::{NOTE_NAME, NOTE_TYPE};
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::ReadRef;
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};

/// Bytes of the ELF64 file header.
const EHDR_SIZE: u64 = size_of::<FileHeader64<LE>>() as u64;
/// Bytes of one ELF64 program header.
const PHDR_SIZE: u64 = size_of::<ProgramHeader64<LE>>() as u64;
/// File offsets of the header fields a fault names.
const EI_CLASS_AT: u64 = 4;
const EI_DATA_AT: u64 = 5;
const E_TYPE_AT: u64 = 16;
const E_PHENTSIZE_AT: u64 = 54;
/// The largest note segment read (a core file's notes take a few KiB).
pub const MAX_NOTES: u64 = 1 << 20;

const _: () = assert!(EHDR_SIZE == 64 && PHDR_SIZE == 56);

/// What is wrong with an image's headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElfFault {
    /// The file does not start with `\x7fELF`.
    #[error("bad ELF magic")]
    BadMagic,
    /// The file is shorter than an ELF64 header.
    #[error("truncated ELF header")]
    TruncatedHeader,
    /// `EI_CLASS` is not `ELFCLASS64`.
    #[error("not ELF64")]
    NotElf64,
    /// `EI_DATA` is not `ELFDATA2LSB`.
    #[error("not little-endian")]
    NotLittleEndian,
    /// `e_type` is not `ET_CORE`.
    #[error("e_type {e_type} is not ET_CORE")]
    NotCore {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_phentsize` is not 56.
    #[error("program header size is not 56")]
    ProgramHeaderSize,
    /// The program header table (or the section header giving its count)
    /// lies beyond the end of the file.
    #[error("program headers beyond end of file")]
    ProgramHeaders,
    /// A segment's file data lies beyond the end of the file.
    #[error("program header {index}: segment data beyond end of file")]
    DataBeyondEnd {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_LOAD` has more file bytes than memory bytes.
    #[error("PT_LOAD {index}: p_filesz {filesz:#x} above p_memsz {memsz:#x}")]
    FileszAboveMemsz {
        /// Index of the program header.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A `PT_LOAD`'s `p_paddr + p_memsz` overflows.
    #[error("PT_LOAD {index}: end of {paddr:#x}+{memsz:#x} overflows")]
    EndOverflows {
        /// Index of the program header.
        index: usize,
        /// `p_paddr`.
        paddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// No `PT_LOAD` segment (with a physical address).
    #[error("no PT_LOAD segment")]
    NoLoad,
    /// A `PT_NOTE` segment larger than [`MAX_NOTES`].
    #[error("note segment {index}: larger than 1 MiB")]
    NoteTooLarge {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_NOTE` segment whose `p_align` is neither 4 (or less) nor 8.
    #[error("note segment {index}: alignment not 4 or 8")]
    NoteAlign {
        /// Index of the program header.
        index: usize,
    },
    /// A note whose header or sizes run past its segment.
    #[error("note segment {index}: malformed note")]
    MalformedNote {
        /// Index of the program header.
        index: usize,
    },
    /// A `"KHO"` note of type 1 whose descriptor is not 32 bytes.
    #[error("KHO note descriptor of {len} bytes, struct kho_data is 32")]
    KhoNoteSize {
        /// The descriptor's length.
        len: usize,
    },
    /// More than one `"KHO"` note of type 1.
    #[error("more than one KHO note")]
    TwoKhoNotes,
}

impl ElfFault {
    /// A fixed description of the fault (without its numbers), as
    /// [`SimError::Image`](crate::SimError::Image) carries it.
    pub const fn what(&self) -> &'static str {
        match self {
            ElfFault::BadMagic => "bad ELF magic",
            ElfFault::TruncatedHeader => "truncated ELF header",
            ElfFault::NotElf64 => "not ELF64",
            ElfFault::NotLittleEndian => "not little-endian",
            ElfFault::NotCore { .. } => "not a core file (e_type)",
            ElfFault::ProgramHeaderSize => "program header size is not 56",
            ElfFault::ProgramHeaders => "program headers beyond end of file",
            ElfFault::DataBeyondEnd { .. } => "segment data beyond end of file",
            ElfFault::FileszAboveMemsz { .. } => "PT_LOAD p_filesz above p_memsz",
            ElfFault::EndOverflows { .. } => "PT_LOAD end overflows",
            ElfFault::NoLoad => "no PT_LOAD segment",
            ElfFault::NoteTooLarge { .. } => "PT_NOTE too large",
            ElfFault::NoteAlign { .. } => "PT_NOTE alignment not 4 or 8",
            ElfFault::MalformedNote { .. } => "malformed note",
            ElfFault::KhoNoteSize { .. } => "KHO note descriptor is not 32 bytes",
            ElfFault::TwoKhoNotes => "more than one KHO note",
        }
    }
}

/// A fault in an image's headers and the file offset it is at (the header
/// field, the program header, or the note segment).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{fault} (file offset {offset:#x})")]
pub struct ElfError {
    /// What is wrong.
    pub fault: ElfFault,
    /// Where, as a file offset.
    pub offset: u64,
}

/// One `PT_LOAD` segment, as read (in file order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreLoad {
    /// `p_paddr`: the PA of its first byte.
    pub paddr: u64,
    /// `p_memsz`: bytes of memory (may be 0).
    pub memsz: u64,
    /// `p_offset`: where its file bytes start.
    pub offset: u64,
    /// `p_filesz`: bytes in the file (at most `memsz`; the rest is zero).
    pub filesz: u64,
    /// File offset of its program header, for error reports.
    pub at: u64,
}

/// What the image's `"KHO"` notes say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KhoNote {
    /// No `"KHO"` note of type 1.
    Absent,
    /// One note with a 32-byte `struct kho_data`.
    Present(KhoData),
    /// The notes cannot be trusted: the first fault found in a note
    /// segment (a malformed note, a short descriptor, two KHO notes, ...).
    Malformed(ElfError),
}

/// What the headers of a core file say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreHeaders {
    /// `e_machine`.
    pub machine: u16,
    /// File offset of the program header table.
    pub phoff: u64,
    /// Every `PT_LOAD` (but those without a PA when asked), in file order.
    pub loads: Vec<CoreLoad>,
    /// The `"KHO"` note.
    pub note: KhoNote,
}

/// Reads the ELF header, the `PT_LOAD` segments and the `"KHO"` note of a
/// core file of `file_len` bytes from `data` (the file, or a prefix holding
/// its headers and notes). With `skip_unaddressed`, segments whose
/// `p_paddr` is all ones (a kernel's `/proc/kcore` gives no PA for vmalloc
/// and module space) are left out.
///
/// A fault in the notes does not fail the read: it is reported as
/// [`KhoNote::Malformed`], and the caller decides.
///
/// # Errors
///
/// An [`ElfError`] naming the fault and its file offset: not a
/// little-endian ELF64 core file, a program header table or segment data
/// beyond the end of the file, a `PT_LOAD` with more file than memory bytes
/// or whose end overflows, or no `PT_LOAD` at all.
pub fn read_headers<'data, R: ReadRef<'data>>(
    data: R,
    file_len: u64,
    skip_unaddressed: bool,
) -> Result<CoreHeaders, ElfError> {
    let err = |fault, offset| ElfError { fault, offset };
    let ident = data.read_bytes_at(0, EHDR_SIZE.min(file_len)).map_err(|_| err(ElfFault::TruncatedHeader, 0))?;
    if ident.len() < 4 || ident[..4] != elf::ELFMAG {
        return Err(err(ElfFault::BadMagic, 0));
    }
    if ident.len() < EHDR_SIZE as usize {
        return Err(err(ElfFault::TruncatedHeader, 0));
    }
    if ident[EI_CLASS_AT as usize] != elf::ELFCLASS64 {
        return Err(err(ElfFault::NotElf64, EI_CLASS_AT));
    }
    if ident[EI_DATA_AT as usize] != elf::ELFDATA2LSB {
        return Err(err(ElfFault::NotLittleEndian, EI_DATA_AT));
    }
    let ehdr = FileHeader64::<LE>::parse(data).map_err(|_| err(ElfFault::TruncatedHeader, 0))?;
    let e_type = ehdr.e_type.get(LE);
    if e_type != elf::ET_CORE {
        return Err(err(ElfFault::NotCore { e_type }, E_TYPE_AT));
    }
    let phoff = ehdr.e_phoff.get(LE);
    if ehdr.e_phnum.get(LE) != 0 && u64::from(ehdr.e_phentsize.get(LE)) != PHDR_SIZE {
        return Err(err(ElfFault::ProgramHeaderSize, E_PHENTSIZE_AT));
    }
    let phdrs = ehdr.program_headers(LE, data).map_err(|_| err(ElfFault::ProgramHeaders, phoff))?;
    let mut loads = Vec::new();
    let mut note = KhoNote::Absent;
    for (index, ph) in phdrs.iter().enumerate() {
        let at = phoff + PHDR_SIZE * index as u64;
        let (offset, filesz) = (ph.p_offset(LE), ph.p_filesz(LE));
        if offset.checked_add(filesz).is_none_or(|e| e > file_len) {
            return Err(err(ElfFault::DataBeyondEnd { index }, at));
        }
        match ph.p_type(LE) {
            elf::PT_LOAD => {
                let (paddr, memsz) = (ph.p_paddr(LE), ph.p_memsz(LE));
                if skip_unaddressed && paddr == u64::MAX {
                    continue;
                }
                if filesz > memsz {
                    return Err(err(ElfFault::FileszAboveMemsz { index, filesz, memsz }, at));
                }
                if paddr.checked_add(memsz).is_none() {
                    return Err(err(ElfFault::EndOverflows { index, paddr, memsz }, at));
                }
                loads.push(CoreLoad { paddr, memsz, offset, filesz, at });
            }
            elf::PT_NOTE if !matches!(note, KhoNote::Malformed(_)) => {
                if let Err(fault) = read_kho_notes(data, ph, index, &mut note) {
                    note = KhoNote::Malformed(err(fault, offset));
                }
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(err(ElfFault::NoLoad, phoff));
    }
    Ok(CoreHeaders { machine: ehdr.e_machine.get(LE), phoff, loads, note })
}

/// Records the `"KHO"` notes of the note segment `ph` (program header
/// `index`) into `note`, which is not [`KhoNote::Malformed`].
fn read_kho_notes<'data, R: ReadRef<'data>>(
    data: R,
    ph: &ProgramHeader64<LE>,
    index: usize,
    note: &mut KhoNote,
) -> Result<(), ElfFault> {
    if ph.p_filesz(LE) > MAX_NOTES {
        return Err(ElfFault::NoteTooLarge { index });
    }
    let bytes = ph.data(LE, data).map_err(|()| ElfFault::DataBeyondEnd { index })?;
    let mut notes =
        NoteIterator::<FileHeader64<LE>>::new(LE, ph.p_align(LE), bytes).map_err(|_| ElfFault::NoteAlign { index })?;
    while let Some(n) = notes.next().map_err(|_| ElfFault::MalformedNote { index })? {
        if n.name() != NOTE_NAME.as_bytes() || n.n_type(LE) != NOTE_TYPE {
            continue;
        }
        if matches!(note, KhoNote::Present(_)) {
            return Err(ElfFault::TwoKhoNotes);
        }
        let desc = n.desc();
        match KhoData::read_from(desc) {
            Ok(d) if desc.len() == size_of::<KhoData>() => *note = KhoNote::Present(d),
            _ => return Err(ElfFault::KhoNoteSize { len: desc.len() }),
        }
    }
    Ok(())
}

/// The parts of `[from, to)` of the file `fd` that hold data, as
/// `SEEK_DATA` and `SEEK_HOLE` report them (holes never written are skipped
/// without reading them); all of it where the file system cannot tell.
///
/// # Errors
///
/// A failed `lseek` other than the file system not knowing.
pub fn data_ranges(fd: BorrowedFd<'_>, from: u64, to: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(s) if s < to => s.max(pos),
            Ok(_) | Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => {
                out.push((pos, to));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let end = match rustix::fs::seek(fd, SeekFrom::Hole(start)) {
            Ok(e) if e > start => e.min(to),
            // No hole after data, or a file system that answers nonsense:
            // the rest is data.
            Ok(_) | Err(Errno::NXIO) => to,
            Err(e) => return Err(e.into()),
        };
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}
