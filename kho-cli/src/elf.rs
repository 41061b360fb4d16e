//! The image reader's view for the command line: kho-sim's reader of
//! ELF64 core headers ([`kho_sim::elf`]), with its faults turned into the
//! command line's [`ImageError`] and [`KhoNote`].

use std::fs::File;
use std::os::fd::AsFd;

use kho_abi::KhoData;
use kho_sim::elf as sim_elf;

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

/// Reads the ELF header, the `PT_LOAD` segments and the `"KHO"` note
/// ([`kho_sim::elf::read_headers`]). `data` holds the file's first bytes
/// (at least its headers and notes); `file_len` is the file's length. With
/// `kcore`, segments whose `p_paddr` is all ones (a kernel's `/proc/kcore`
/// gives no PA for vmalloc and module space) are left out. Segments
/// without memory are dropped.
pub(crate) fn parse_headers(data: &[u8], file_len: u64, kcore: bool) -> Result<Headers, ImageError> {
    let h = sim_elf::read_headers(data, file_len, kcore).map_err(|e| format_err(e.to_string()))?;
    let loads: Vec<Load> = h
        .loads
        .iter()
        .filter(|l| l.memsz > 0)
        .map(|l| Load { paddr: l.paddr, memsz: l.memsz, offset: l.offset, filesz: l.filesz })
        .collect();
    if loads.is_empty() {
        return Err(format_err(sim_elf::ElfFault::NoLoad.to_string()));
    }
    let note = match h.note {
        sim_elf::KhoNote::Absent => KhoNote::Absent,
        sim_elf::KhoNote::Present(d) => KhoNote::Present(d),
        sim_elf::KhoNote::Malformed(e) => KhoNote::Malformed { what: e.to_string() },
    };
    Ok(Headers { loads, note, machine: h.machine })
}

/// The parts of `[from, to)` of `file` that hold data, per `SEEK_DATA` and
/// `SEEK_HOLE` ([`kho_sim::elf::data_ranges`]); all of it where the file
/// system cannot tell.
pub(crate) fn file_data(file: &File, from: u64, to: u64) -> Result<Vec<(u64, u64)>, ImageError> {
    Ok(sim_elf::data_ranges(file.as_fd(), from, to)?)
}
