//! Reading an ELF64 core file: the header, the `PT_LOAD` segments, the
//! `"KHO"` note (type 1, `struct kho_data`), and which parts of the file
//! hold data. Little-endian ELF64 `ET_CORE` only; extended program header
//! numbering (`PN_XNUM`) is handled by `object`.

use std::fs::File;
use std::os::fd::AsFd;

use kho_abi::KhoData;
use kho_abi::handover::{NOTE_NAME, NOTE_TYPE};
use object::LittleEndian as LE;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};

/// Why an image could not be opened.
#[derive(Debug)]
pub enum ImageError {
    /// Reading or mapping the file failed.
    Io(std::io::Error),
    /// The file is not an ELF64 core image this tool reads.
    Format {
        /// What is wrong.
        what: String,
    },
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::Io(e) => write!(f, "{e}"),
            ImageError::Format { what } => write!(f, "not a usable ELF64 core image: {what}"),
        }
    }
}

impl std::error::Error for ImageError {}

impl From<std::io::Error> for ImageError {
    fn from(e: std::io::Error) -> Self {
        ImageError::Io(e)
    }
}

/// An `ImageError::Format` saying `what`.
pub(crate) fn format_err(what: impl Into<String>) -> ImageError {
    ImageError::Format { what: what.into() }
}

/// What the image's `"KHO"` note held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KhoNote {
    /// No `"KHO"` note of type 1.
    Absent,
    /// One note with a 32-byte `struct kho_data`.
    Present(KhoData),
    /// A `"KHO"` note that is not a usable `kho_data`.
    Malformed {
        /// What is wrong with it.
        what: String,
    },
}

/// A `PT_LOAD` as read, before merging.
pub(crate) struct Load {
    pub(crate) paddr: u64,
    pub(crate) memsz: u64,
    pub(crate) offset: u64,
    pub(crate) filesz: u64,
}

/// What the headers of a core file say.
pub(crate) struct Headers {
    /// The `PT_LOAD` segments with memory, as read.
    pub(crate) loads: Vec<Load>,
    /// The `"KHO"` note.
    pub(crate) note: KhoNote,
    /// `e_machine`.
    pub(crate) machine: u16,
}

/// Reads the ELF header, the `PT_LOAD` segments and the `"KHO"` note.
/// `data` holds the file's first bytes (at least its headers and notes);
/// `file_len` is the file's length. With `kcore`, segments whose `p_paddr`
/// is all ones (a kernel's `/proc/kcore` gives no PA for vmalloc and
/// module space) are left out.
pub(crate) fn parse_headers(data: &[u8], file_len: u64, kcore: bool) -> Result<Headers, ImageError> {
    let ehdr = elf::FileHeader64::<LE>::parse(data).map_err(|e| format_err(format!("ELF header: {e}")))?;
    if ehdr.e_type.get(LE) != elf::ET_CORE {
        return Err(format_err(format!("e_type {} is not ET_CORE", ehdr.e_type.get(LE))));
    }
    let phdrs = ehdr.program_headers(LE, data).map_err(|e| format_err(format!("program headers: {e}")))?;
    let mut loads = Vec::new();
    let mut note = KhoNote::Absent;
    for (i, ph) in phdrs.iter().enumerate() {
        let (offset, filesz) = (ph.p_offset(LE), ph.p_filesz(LE));
        if offset.checked_add(filesz).is_none_or(|e| e > file_len) {
            return Err(format_err(format!("program header {i}: data beyond the end of the file")));
        }
        match ph.p_type(LE) {
            elf::PT_LOAD => {
                let (paddr, memsz) = (ph.p_paddr(LE), ph.p_memsz(LE));
                if kcore && paddr == u64::MAX {
                    continue;
                }
                if filesz > memsz {
                    return Err(format_err(format!("PT_LOAD {i}: p_filesz {filesz:#x} above p_memsz {memsz:#x}")));
                }
                if paddr.checked_add(memsz).is_none() {
                    return Err(format_err(format!("PT_LOAD {i}: end of {paddr:#x}+{memsz:#x} overflows")));
                }
                if memsz > 0 {
                    loads.push(Load { paddr, memsz, offset, filesz });
                }
            }
            elf::PT_NOTE => {
                let notes = match ph.notes(LE, data) {
                    Ok(Some(n)) => n,
                    Ok(None) => continue,
                    Err(e) => {
                        note = KhoNote::Malformed { what: format!("note segment {i}: {e}") };
                        continue;
                    }
                };
                read_kho_notes(notes, &mut note);
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(format_err("no PT_LOAD segment"));
    }
    Ok(Headers { loads, note, machine: ehdr.e_machine.get(LE) })
}

/// Records the `"KHO"` notes of one note segment into `note`.
fn read_kho_notes(mut notes: object::read::elf::NoteIterator<'_, elf::FileHeader64<LE>>, note: &mut KhoNote) {
    loop {
        let n = match notes.next() {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                *note = KhoNote::Malformed { what: format!("malformed note: {e}") };
                return;
            }
        };
        if n.name() != NOTE_NAME.as_bytes() || n.n_type(LE) != NOTE_TYPE {
            continue;
        }
        *note = match note {
            KhoNote::Absent => match KhoData::read_from(n.desc()) {
                Ok(d) if n.desc().len() == size_of::<KhoData>() => KhoNote::Present(d),
                _ => KhoNote::Malformed {
                    what: format!("KHO note descriptor of {} bytes, struct kho_data is 32", n.desc().len()),
                },
            },
            KhoNote::Present(_) => KhoNote::Malformed { what: "more than one KHO note".into() },
            KhoNote::Malformed { what } => KhoNote::Malformed { what: what.clone() },
        };
    }
}

/// The parts of `[from, to)` of `file` that hold data, per `SEEK_DATA` and
/// `SEEK_HOLE`; all of it where the file system cannot tell.
pub(crate) fn file_data(file: &File, from: u64, to: u64) -> Result<Vec<(u64, u64)>, ImageError> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    let fd = file.as_fd();
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
            Err(e) => return Err(ImageError::Io(e.into())),
        };
        let end = match rustix::fs::seek(fd, SeekFrom::Hole(start)) {
            Ok(e) if e > start => e.min(to),
            Ok(_) | Err(Errno::NXIO) => to,
            Err(e) => return Err(ImageError::Io(e.into())),
        };
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}
