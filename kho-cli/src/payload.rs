//! Decoding the subtrees' payloads: the layers a real kernel hands over
//! (`LUO` with its memfds, `memblock`, `kexec-metadata`, `kho_test`).
//!
//! Each layer crate's `inspect` runs every check its next kernel runs,
//! claiming through the incoming tracker, and gives every claim back, so
//! the analysis sees the tracker as it was. Subtrees and file handlers
//! no layer crate knows are listed as opaque, never as errors.

use kho_abi::{Claim, PageAlloc, PhysAddr, PhysMem};
use serde::Serialize;

/// A decoded subtree payload (`payload` of a subtree in the JSON report).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// `LUO` (`luo-v5`): sessions of preserved files and the FLBs.
    Luo(LuoInfo),
    /// `memblock` (`memblock-v1`): the `reserve_mem` regions.
    Memblock {
        /// The regions, in FDT order.
        regions: Vec<RegionInfo>,
    },
    /// `kexec-metadata`.
    KexecMetadata {
        /// The layout version.
        version: u32,
        /// The release of the kernel that handed over (`null` for a
        /// version this tool does not know, which the kernel ignores).
        previous_release: Option<String>,
        /// Kexecs in the chain (`null` for an unknown version).
        kexec_count: Option<u32>,
    },
    /// `kho_test` (`kho-test-v1`): the kernel's self-test data.
    KhoTest {
        /// Folios preserved by the test.
        folios: u64,
        /// Pages in them.
        pages: u64,
        /// The checksum the previous kernel stored.
        stored_csum: u32,
        /// The checksum of the folios as found.
        computed_csum: u32,
        /// Whether they agree (the next kernel's test passes).
        checksum_holds: bool,
    },
    /// A subtree no layer of this tool decodes (or one without a
    /// `blob-size`, written before kho-v3).
    Opaque,
    /// A known layer that does not decode: the next kernel would refuse it.
    Error(PayloadError),
}

/// Why a known layer did not decode.
#[derive(Clone, Debug, Serialize)]
pub struct PayloadError {
    /// The fault's stable name, the layer error's `kind()`
    /// (`<layer>_<error>[_<fault>]`, such as `luo_compatible` or
    /// `memfd_descriptor_unknown_bits`).
    pub fault: String,
    /// One line: what is wrong and where (session, file, field).
    pub message: String,
}

/// The LUO state.
#[derive(Clone, Debug, Serialize)]
pub struct LuoInfo {
    /// `liveupdate_num`: live updates so far.
    pub liveupdate_num: u64,
    /// Sessions, in chain order.
    pub sessions: Vec<SessionInfo>,
    /// File-lifecycle-bound entries.
    pub flbs: Vec<FlbInfo>,
}

/// One LUO session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    /// Its name.
    pub name: String,
    /// Number of files.
    pub file_count: u64,
    /// The files, in chain order.
    pub files: Vec<FileInfo>,
}

/// One preserved file.
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    /// The file handler's compatible (`memfd-v2`, ...).
    pub compatible: String,
    /// The token user space retrieves it by.
    pub token: u64,
    /// The handler's data PA.
    pub data: u64,
    /// For `memfd-v2`: the decoded memfd; `null` for handlers this tool
    /// does not decode (opaque).
    pub memfd: Option<MemfdInfo>,
}

/// A preserved memfd.
#[derive(Clone, Debug, Serialize)]
pub struct MemfdInfo {
    /// File size in bytes.
    pub size: u64,
    /// File position.
    pub pos: u64,
    /// `F_SEAL_*` bits.
    pub seals: u32,
    /// Folios preserved.
    pub folios: u64,
    /// Pages in them.
    pub pages: u64,
    /// Folios flagged dirty.
    pub dirty: u64,
    /// Folios flagged up to date.
    pub uptodate: u64,
}

/// One FLB.
#[derive(Clone, Debug, Serialize)]
pub struct FlbInfo {
    /// Its name (compatible).
    pub name: String,
    /// Its data PA.
    pub data: u64,
    /// Its reference count.
    pub count: u64,
}

/// One `reserve_mem` region.
#[derive(Clone, Debug, Serialize)]
pub struct RegionInfo {
    /// Its name.
    pub name: String,
    /// First PA.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A preserved memfd as decoded, for `kho extract`.
#[derive(Clone, Debug)]
pub struct DecodedFile {
    /// The session's name.
    pub session: String,
    /// The file's token.
    pub token: u64,
    /// The handler's compatible.
    pub compatible: String,
    /// The memfd, for `memfd-v2` files.
    pub memfd: Option<kho_memfd::Memfd>,
}

/// What the LUO subtree holds, for `kho extract`.
#[derive(Clone, Debug, Default)]
pub struct LuoFiles {
    /// Session names, in chain order.
    pub sessions: Vec<String>,
    /// Every file of every session.
    pub files: Vec<DecodedFile>,
}

/// Memory a decoded payload owns, for the map: a label and its PA
/// ranges `(start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// What owns it (`memfd lab0-s0/0x1`, `reserve_mem lab_chain`,
    /// `kho_test data`).
    pub label: String,
    /// The ranges, `(start, end)`.
    pub ranges: Vec<(u64, u64)>,
}

/// The report of a layer error: its stable name (the layer error's
/// `kind()`) and its message after `context`.
fn error(kind: &str, e: &impl std::fmt::Display, context: &str) -> Payload {
    Payload::Error(PayloadError { fault: kind.into(), message: format!("{context}{e}") })
}

/// Decodes the subtree `name` whose blob is at `pa` (`size` bytes) through
/// `p` (the image joined with the incoming tracker). For `LUO`, also
/// returns the decoded files.
pub fn decode<P>(p: &P, name: &str, pa: PhysAddr, size: u64) -> (Payload, Option<LuoFiles>, Vec<Owner>)
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let (payload, files, mut owners) = decode_inner(p, name, pa, size);
    if let Some(f) = &files {
        for d in &f.files {
            if let Some(m) = &d.memfd {
                let ranges = m.folios.iter().map(|f| (f.pa.as_u64(), f.pa.as_u64() + f.pages() * PAGE)).collect();
                owners.push(Owner { label: format!("memfd {}/{:#x}", d.session, d.token), ranges });
            }
        }
    }
    (payload, files, owners)
}

const PAGE: u64 = kho_abi::PAGE_SIZE as u64;

fn decode_inner<P>(p: &P, name: &str, pa: PhysAddr, size: u64) -> (Payload, Option<LuoFiles>, Vec<Owner>)
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    match name {
        kho_luo::LUO_SUBTREE => match kho_luo::inspect(p, pa, size) {
            Ok(luo) => {
                let (info, files) = luo_info(p, &luo);
                (info, Some(files), vec![])
            }
            Err(e) => (error(e.kind(), &e, ""), None, vec![]),
        },
        kho_memblock::SUBTREE => match kho_memblock::inspect(p, pa, size) {
            Ok(m) => (
                Payload::Memblock {
                    regions: m
                        .regions
                        .iter()
                        .map(|r| RegionInfo { name: r.name.clone(), start: r.start.as_u64(), size: r.size })
                        .collect(),
                },
                None,
                m.regions
                    .iter()
                    .map(|r| Owner {
                        label: format!("reserve_mem {}", r.name),
                        ranges: vec![(r.start.as_u64(), r.start.as_u64().saturating_add(r.size))],
                    })
                    .collect(),
            ),
            Err(e) => (error(e.kind(), &e, ""), None, vec![]),
        },
        kho_kexec_meta::SUBTREE => match kho_kexec_meta::inspect(p, pa, size) {
            Ok(kho_kexec_meta::KexecMetadata::V1 { previous_release, kexec_count }) => (
                Payload::KexecMetadata {
                    version: kho_kexec_meta::VERSION,
                    previous_release: Some(previous_release),
                    kexec_count: Some(kexec_count),
                },
                None,
                vec![],
            ),
            Ok(kho_kexec_meta::KexecMetadata::Unknown { version }) => {
                (Payload::KexecMetadata { version, previous_release: None, kexec_count: None }, None, vec![])
            }
            Err(e) => (error(e.kind(), &e, ""), None, vec![]),
        },
        kho_selftest::SUBTREE => match kho_selftest::inspect(p, pa, size) {
            Ok(t) => (
                Payload::KhoTest {
                    folios: t.folios.len() as u64,
                    pages: t.pages(),
                    stored_csum: t.stored_csum,
                    computed_csum: t.computed_csum,
                    checksum_holds: t.checksum_holds(),
                },
                None,
                vec![Owner {
                    label: "kho_test data".into(),
                    ranges: t.folios.iter().map(|&(pa, o)| (pa.as_u64(), pa.as_u64() + o.pages() * PAGE)).collect(),
                }],
            ),
            Err(e) => (error(e.kind(), &e, ""), None, vec![]),
        },
        _ => (Payload::Opaque, None, vec![]),
    }
}

fn luo_info<P>(p: &P, luo: &kho_luo::Luo) -> (Payload, LuoFiles)
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let mut files = LuoFiles::default();
    let mut sessions = Vec::new();
    for s in &luo.sessions {
        files.sessions.push(s.name.clone());
        let mut infos = Vec::new();
        for (i, f) in s.files.iter().enumerate() {
            let memfd = if f.compatible == kho_memfd::MEMFD_V2 {
                match kho_memfd::inspect(p, PhysAddr::new(f.data)) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        let at = format!("session {:?}, file {i} (token {:#x}): ", s.name, f.token);
                        return (error(e.kind(), &e, &at), LuoFiles::default());
                    }
                }
            } else {
                None
            };
            infos.push(FileInfo {
                compatible: f.compatible.clone(),
                token: f.token,
                data: f.data,
                memfd: memfd.as_ref().map(|m| MemfdInfo {
                    size: m.size,
                    pos: m.pos,
                    seals: m.seals,
                    folios: m.folios.len() as u64,
                    pages: m.folios.iter().map(|f| f.pages()).sum(),
                    dirty: m.folios.iter().filter(|f| f.dirty()).count() as u64,
                    uptodate: m.folios.iter().filter(|f| f.uptodate()).count() as u64,
                }),
            });
            files.files.push(DecodedFile {
                session: s.name.clone(),
                token: f.token,
                compatible: f.compatible.clone(),
                memfd,
            });
        }
        sessions.push(SessionInfo { name: s.name.clone(), file_count: infos.len() as u64, files: infos });
    }
    let flbs = luo
        .flbs
        .as_ref()
        .map(|f| f.entries.iter().map(|e| FlbInfo { name: e.name.clone(), data: e.data, count: e.count }).collect())
        .unwrap_or_default();
    (Payload::Luo(LuoInfo { liveupdate_num: luo.liveupdate_num, sessions, flbs }), files)
}
