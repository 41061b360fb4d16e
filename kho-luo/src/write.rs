//! The outgoing side: LUO state as a 7.2 kernel writes it.

use alloc::string::String;
use alloc::vec::Vec;

use kho_abi::{Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, write_phys, zero_phys};
use kho_block::BlockSet;

use crate::abi::{
    FILE_COMPATIBLE_LEN, FLB_NAME_LEN, FLB_PGCNT, FileSer, FlbHeader, FlbSer, LUO_V5_BYTES, LuoSer, SESSION_NAME_LEN,
    SessionSer, to_c_name,
};
use crate::error::LuoError;

/// A session of a [`LuoWriter`], as handed out by
/// [`create_session`](LuoWriter::create_session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionId(usize);

#[derive(Debug)]
struct SessionOut {
    name: [u8; SESSION_NAME_LEN],
    files: BlockSet<FileSer>,
    entries: Vec<FileSer>,
}

/// Builds LUO state the way a 7.2 kernel does.
///
/// - [`new`](LuoWriter::new) is the kernel's boot-time setup: the blob
///   page and the one-page FLB region are allocated and preserved, the blob
///   holds the compatible, the live-update number and `flbs_pa`, and
///   `sessions_pa` is 0.
/// - [`create_session`](LuoWriter::create_session) and
///   [`preserve_file`](LuoWriter::preserve_file) reserve (allocate and
///   preserve) room in the session and file block sets as user space
///   creates sessions and preserves files; nothing is visible yet.
/// - [`serialize`](LuoWriter::serialize) is the reboot path: every file
///   set, the session set and the FLB entries are written, and
///   `sessions_pa` points at the session chain (0 without sessions).
///
/// Add the blob as the `LUO` subtree ([`LuoWriter::blob`],
/// [`LuoWriter::BLOB_SIZE`]) with the tracker.
#[derive(Debug)]
pub struct LuoWriter {
    blob: PhysAddr,
    flbs: PhysAddr,
    liveupdate_num: u64,
    sessions: BlockSet<SessionSer>,
    list: Vec<SessionOut>,
    flb_entries: Vec<FlbSer>,
}

impl LuoWriter {
    /// Bytes of the blob (its `blob-size`).
    pub const BLOB_SIZE: u64 = size_of::<LuoSer>() as u64;

    /// Entries the one-page FLB region holds.
    pub const FLB_MAX: usize = (PAGE_SIZE - size_of::<FlbHeader>()) / size_of::<FlbSer>();

    /// Allocates and preserves the blob and the FLB region and writes their
    /// boot-time contents.
    pub fn new<P>(p: &P, liveupdate_num: u64) -> Result<Self, LuoError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let blob = alloc_preserved(p)?;
        let flbs = match alloc_preserved(p) {
            Ok(pa) => pa,
            Err(e) => {
                let _ = p.unpreserve(blob, Order::ZERO);
                p.free_pages(blob, Order::ZERO);
                return Err(e);
            }
        };
        let w = LuoWriter {
            blob,
            flbs,
            liveupdate_num,
            sessions: BlockSet::new(),
            list: Vec::new(),
            flb_entries: Vec::new(),
        };
        w.write_blob(p, 0)?;
        write_phys(p, flbs, &FlbHeader { pgcnt: FLB_PGCNT, count: 0 })?;
        Ok(w)
    }

    /// PA of the blob.
    pub fn blob(&self) -> PhysAddr {
        self.blob
    }

    /// PA of the FLB region.
    pub fn flbs(&self) -> PhysAddr {
        self.flbs
    }

    /// Sessions created.
    pub fn sessions(&self) -> usize {
        self.list.len()
    }

    /// Creates a session: `name` is 1..=63 bytes without NUL, unique.
    /// Reserves an entry in the session set.
    pub fn create_session<P>(&mut self, p: &P, name: &[u8]) -> Result<SessionId, LuoError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let name_arr = to_c_name::<SESSION_NAME_LEN>(name)
            .ok_or_else(|| LuoError::BadName { what: "session name", value: lossy(name) })?;
        if self.list.iter().any(|s| s.name == name_arr) {
            return Err(LuoError::Exists { what: "session", value: lossy(name) });
        }
        self.sessions.grow(p, 1).map_err(LuoError::Block)?;
        self.list.push(SessionOut { name: name_arr, files: BlockSet::new(), entries: Vec::new() });
        Ok(SessionId(self.list.len() - 1))
    }

    /// Preserves a file in `session`: its handler's `compatible`
    /// (1..=47 bytes), the handler's `data` and the user's `token` (unique
    /// in the session). Reserves an entry in the session's file set.
    pub fn preserve_file<P>(
        &mut self,
        p: &P,
        session: SessionId,
        compatible: &str,
        data: u64,
        token: u64,
    ) -> Result<(), LuoError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let compat = to_c_name::<FILE_COMPATIBLE_LEN>(compatible.as_bytes())
            .ok_or_else(|| LuoError::BadName { what: "file compatible", value: compatible.into() })?;
        let s = self.list.get_mut(session.0).ok_or(LuoError::NoSession(session.0))?;
        if s.entries.iter().any(|f| f.token == token) {
            return Err(LuoError::Exists { what: "token", value: alloc::format!("{token:#x}") });
        }
        s.files.grow(p, 1).map_err(LuoError::Block)?;
        s.entries.push(FileSer { compatible: compat, data, token });
        Ok(())
    }

    /// Registers an FLB, written at [`serialize`](LuoWriter::serialize).
    pub fn add_flb(&mut self, name: &str, data: u64, count: u64) -> Result<(), LuoError> {
        let name_arr = to_c_name::<FLB_NAME_LEN>(name.as_bytes())
            .ok_or_else(|| LuoError::BadName { what: "FLB name", value: name.into() })?;
        if self.flb_entries.iter().any(|f| f.name == name_arr) {
            return Err(LuoError::Exists { what: "FLB", value: name.into() });
        }
        if self.flb_entries.len() == Self::FLB_MAX {
            return Err(LuoError::FlbFull { max: Self::FLB_MAX });
        }
        self.flb_entries.push(FlbSer { name: name_arr, data, count });
        Ok(())
    }

    /// The reboot path: writes every file set, the session set, the FLB
    /// entries, and `sessions_pa`. May be called again after more
    /// sessions or files were added (everything is rewritten).
    pub fn serialize<P>(&mut self, p: &P) -> Result<(), LuoError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let mut entries = Vec::with_capacity(self.list.len());
        for s in &mut self.list {
            s.files.clear(p).map_err(LuoError::Block)?;
            s.files.writer(p).extend(&s.entries).map_err(LuoError::Block)?;
            let files = s.files.head().as_u64();
            entries.push(SessionSer { name: s.name, files, count: s.entries.len() as u64 });
        }
        self.sessions.clear(p).map_err(LuoError::Block)?;
        self.sessions.writer(p).extend(&entries).map_err(LuoError::Block)?;
        let header = FlbHeader { pgcnt: FLB_PGCNT, count: self.flb_entries.len() as u64 };
        write_phys(p, self.flbs, &header)?;
        for (i, e) in self.flb_entries.iter().enumerate() {
            let at = self.flbs.as_u64() + (size_of::<FlbHeader>() + i * size_of::<FlbSer>()) as u64;
            write_phys(p, PhysAddr::new(at), e)?;
        }
        self.write_blob(p, self.sessions.head().as_u64())
    }

    fn write_blob<P: PhysMem + ?Sized>(&self, p: &P, sessions_pa: u64) -> Result<(), LuoError> {
        let ser = LuoSer {
            compatible: LUO_V5_BYTES,
            liveupdate_num: self.liveupdate_num,
            sessions_pa,
            flbs_pa: self.flbs.as_u64(),
        };
        write_phys(p, self.blob, &ser)?;
        Ok(())
    }
}

fn alloc_preserved<P>(p: &P) -> Result<PhysAddr, LuoError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let pa = p.alloc_pages(Order::ZERO)?;
    let done = zero_phys(p, pa, PAGE_SIZE as u64).and_then(|()| p.preserve(pa, Order::ZERO));
    if let Err(e) = done {
        p.free_pages(pa, Order::ZERO);
        return Err(e.into());
    }
    Ok(pa)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
