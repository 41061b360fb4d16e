//! `kho extract`: a preserved memfd's contents, written to a file.
//!
//! The file is written in file order: each folio at its page index times
//! the page size, cut at the file's size. Pages no folio covers stay
//! holes (never written), and so do folios not flagged up to date, whose
//! contents the next kernel's shmem would read as zeros. The output file's
//! length is set to the memfd's size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use kho_abi::{PAGE_SIZE, PhysAddr, PhysMem, read_phys_bytes};

use crate::payload::LuoFiles;

const PAGE: u64 = PAGE_SIZE as u64;
/// Bytes copied at a time.
const CHUNK: u64 = 1 << 20;

/// Why nothing (or not everything) was extracted.
#[derive(Debug)]
pub enum ExtractError {
    /// The handover has no `LUO` subtree.
    NoLuo,
    /// The `LUO` subtree does not decode (its error is in the report).
    LuoInvalid(String),
    /// No session of that name; the names there are.
    NoSession {
        /// The name asked for.
        name: String,
        /// The sessions there are.
        have: Vec<String>,
    },
    /// No file with that token in the session; the tokens there are.
    NoToken {
        /// The session.
        session: String,
        /// The token asked for.
        token: u64,
        /// The tokens there are.
        have: Vec<u64>,
    },
    /// The file's handler is not `memfd-v2`.
    NotMemfd {
        /// The session.
        session: String,
        /// The token.
        token: u64,
        /// Its handler's compatible.
        compatible: String,
    },
    /// A folio could not be read from the image.
    Read {
        /// The folio's PA.
        pa: u64,
        /// What the image said.
        source: kho_abi::AbiError,
    },
    /// Writing the output failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractError::NoLuo => write!(f, "the handover has no LUO subtree: nothing was preserved by live update"),
            ExtractError::LuoInvalid(m) => write!(f, "the LUO subtree does not decode: {m}"),
            ExtractError::NoSession { name, have } => {
                write!(f, "no LUO session named {name:?} (sessions: {have:?})")
            }
            ExtractError::NoToken { session, token, have } => {
                let have: Vec<String> = have.iter().map(|t| format!("{t:#x}")).collect();
                write!(f, "session {session:?} has no file with token {token:#x} (tokens: {})", have.join(", "))
            }
            ExtractError::NotMemfd { session, token, compatible } => write!(
                f,
                "session {session:?}, token {token:#x}: the file's handler is {compatible:?}, not a memfd ({:?})",
                kho_memfd::MEMFD_V2
            ),
            ExtractError::Read { pa, source } => write!(f, "reading the folio at PA {pa:#x}: {source}"),
            ExtractError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ExtractError {}

/// What [`write()`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The file's size (the output's length).
    pub size: u64,
    /// Bytes written from folios.
    pub written: u64,
    /// Folios copied.
    pub folios: u64,
}

/// The memfd `token` of session `session` in `luo` (`None`: no LUO
/// subtree; `Some(Err)`: one that does not decode), read from `mem`.
pub fn find<'a>(
    luo: Option<Result<&'a LuoFiles, String>>,
    session: &str,
    token: u64,
) -> Result<&'a kho_memfd::Memfd, ExtractError> {
    let luo = match luo {
        None => return Err(ExtractError::NoLuo),
        Some(Err(m)) => return Err(ExtractError::LuoInvalid(m)),
        Some(Ok(l)) => l,
    };
    if !luo.sessions.iter().any(|s| s == session) {
        return Err(ExtractError::NoSession { name: session.to_string(), have: luo.sessions.clone() });
    }
    let in_session = || luo.files.iter().filter(|f| f.session == session);
    let file = in_session().find(|f| f.token == token).ok_or_else(|| ExtractError::NoToken {
        session: session.to_string(),
        token,
        have: in_session().map(|f| f.token).collect(),
    })?;
    file.memfd.as_ref().ok_or_else(|| ExtractError::NotMemfd {
        session: session.to_string(),
        token,
        compatible: file.compatible.clone(),
    })
}

/// Writes `memfd`'s contents, read from `mem`, to `out` (created or
/// truncated; removed again if the copy fails, so no partial file is left
/// to be taken for the memfd).
pub fn write<M: PhysMem + ?Sized>(mem: &M, memfd: &kho_memfd::Memfd, out: &Path) -> Result<Extracted, ExtractError> {
    let file = File::create(out).map_err(ExtractError::Io)?;
    let result = copy(mem, memfd, &file);
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(out);
    }
    result
}

fn copy<M: PhysMem + ?Sized>(mem: &M, memfd: &kho_memfd::Memfd, file: &File) -> Result<Extracted, ExtractError> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut done = Extracted { size: memfd.size, written: 0, folios: 0 };
    for folio in memfd.folios.iter().filter(|f| f.uptodate()) {
        let start = folio.index.saturating_mul(PAGE);
        if start >= memfd.size {
            continue;
        }
        let len = folio.pages().saturating_mul(PAGE).min(memfd.size - start);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK);
            // `n` is at most CHUNK, the buffer's length.
            let chunk = &mut buf[..n as usize];
            let pa = folio.pa.as_u64() + at;
            read_phys_bytes(mem, PhysAddr::new(pa), chunk).map_err(|source| ExtractError::Read { pa, source })?;
            file.write_all_at(chunk, start + at).map_err(ExtractError::Io)?;
            at += n;
        }
        done.written += len;
        done.folios += 1;
    }
    file.set_len(memfd.size).map_err(ExtractError::Io)?;
    file.sync_all().map_err(ExtractError::Io)?;
    Ok(done)
}
