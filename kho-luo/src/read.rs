//! The incoming side: adopting, or inspecting, the LUO state a previous
//! kernel left.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kho_abi::block::BlockHeader;
use kho_abi::{AbiError, Claim, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, read_phys};
use kho_block::{BlockSet, RestoredBlockSet};
use kho_probe::Probe;

use crate::abi::{FILE_COMPATIBLE_LEN, FileSer, FlbHeader, FlbSer, LUO_V5_BYTES, LuoSer, SessionSer, c_name};
use crate::error::{Fault, LuoError, SessionAt};

/// The decoded LUO state of a handover: plain data, no handle on memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Luo {
    /// PA of the blob (`struct luo_ser`).
    pub blob: PhysAddr,
    /// Order of the preserved block holding it.
    pub blob_order: Order,
    /// The live-update sequence number.
    pub liveupdate_num: u64,
    /// PA of the first session block, null if there are none (always null
    /// in a dump of a live kernel: sessions are written at reboot).
    pub sessions_pa: PhysAddr,
    /// The session chain's block pages, in chain order.
    pub session_blocks: Vec<PhysAddr>,
    /// The sessions, in chain order.
    pub sessions: Vec<Session>,
    /// The FLB region, if `flbs_pa` is not 0.
    pub flbs: Option<Flbs>,
}

/// One preserved session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its name, lossy UTF-8 (names are user bytes).
    pub name: String,
    /// Its name's bytes, without the NUL.
    pub raw_name: Vec<u8>,
    /// PA of the first file block, null without files.
    pub files_pa: PhysAddr,
    /// The file chain's block pages, in chain order.
    pub file_blocks: Vec<PhysAddr>,
    /// The files, in chain order.
    pub files: Vec<File>,
}

/// One preserved file of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// The file handler's compatible (`"memfd-v2"`, ...), lossy UTF-8.
    /// Handlers this crate does not know are listed as they are.
    pub compatible: String,
    /// Handler-private data: for `memfd-v2`, the PA of the memfd
    /// descriptor, which `kho-memfd` decodes and checks.
    pub data: u64,
    /// The user's token, unique in the session.
    pub token: u64,
}

/// The FLB region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flbs {
    /// PA of the region (its header).
    pub pa: PhysAddr,
    /// Pages of the region.
    pub pgcnt: u64,
    /// The entries.
    pub entries: Vec<Flb>,
}

/// One FLB entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flb {
    /// Its name, lossy UTF-8.
    pub name: String,
    /// Owner-private data.
    pub data: u64,
    /// Files bound to it.
    pub count: u64,
}

impl Luo {
    /// The session called `name`.
    pub fn session(&self, name: &str) -> Option<&Session> {
        self.sessions.iter().find(|s| s.raw_name == name.as_bytes())
    }

    /// Files in all sessions.
    pub fn file_count(&self) -> usize {
        self.sessions.iter().map(|s| s.files.len()).sum()
    }
}

impl Session {
    /// The file with `token`.
    pub fn file(&self, token: u64) -> Option<&File> {
        self.files.iter().find(|f| f.token == token)
    }
}

/// LUO state adopted by the next kernel: every page it reaches is claimed
/// (blob, session and file blocks, FLB region) until [`free`] or
/// [`unclaim`].
///
/// [`free`]: RestoredLuo::free
/// [`unclaim`]: RestoredLuo::unclaim
#[derive(Debug)]
pub struct RestoredLuo {
    luo: Luo,
    held: Held,
}

impl RestoredLuo {
    /// The decoded state.
    pub fn luo(&self) -> &Luo {
        &self.luo
    }

    /// Gives every page back to the tracker unclaimed.
    pub fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        self.held.unclaim(p);
    }

    /// Frees every page (they were claimed, so they are the platform's) and
    /// returns the decoded state.
    pub fn free<P: PhysMem + PageAlloc + ?Sized>(self, p: &P) -> Result<Luo, LuoError> {
        for set in self.held.file_sets.into_iter().rev() {
            set.free(p).map_err(LuoError::Block)?;
        }
        if let Some(set) = self.held.sessions {
            set.free(p).map_err(LuoError::Block)?;
        }
        for (pa, order) in self.held.pages {
            p.free_pages(pa, order);
        }
        Ok(self.luo)
    }
}

/// What a restore holds claimed.
#[derive(Debug, Default)]
struct Held {
    /// Blob and FLB region.
    pages: Vec<(PhysAddr, Order)>,
    sessions: Option<RestoredBlockSet<SessionSer>>,
    file_sets: Vec<RestoredBlockSet<FileSer>>,
}

impl Held {
    fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        for set in self.file_sets.into_iter().rev() {
            set.unclaim(p);
        }
        if let Some(set) = self.sessions {
            set.unclaim(p);
        }
        for (pa, order) in self.pages.into_iter().rev() {
            p.unclaim(pa, order);
        }
    }
}

/// The smallest order whose block holds `pages` pages.
fn order_for(pages: u64) -> u32 {
    if pages <= 1 { 0 } else { 64 - (pages - 1).leading_zeros() }
}

/// Adopts the LUO state whose blob (the `LUO` subtree's `preserved-data`)
/// is `blob`, `size` bytes (its `blob-size`).
///
/// Checked, in this order, each before anything it guards is trusted:
///
/// - the blob: at least 32 bytes, page aligned, RAM, preserved as one
///   block of the order its size needs (claimed);
/// - `compatible`: exactly `"luo-v5"` NUL-padded;
/// - the session chain: `block-v1` rules through `kho-block`'s validated
///   restore (aligned, RAM, bounded, cycle-free, counts in range, every
///   block claimed);
/// - each session: name NUL-terminated, not empty, unique; its file chain
///   restored like the session chain; `count` equal to the files the chain
///   holds;
/// - each file: compatible NUL-terminated and not empty; token unique in
///   its session;
/// - the FLB region, if `flbs_pa` is not 0: page aligned, RAM, `pgcnt` in
///   `1..=` the pages of the largest order, preserved as one block of that
///   size (claimed), `count` entries fitting in `pgcnt` pages, names
///   NUL-terminated, not empty and unique.
///
/// A file's `data` is the handler's: `kho-memfd` checks a `memfd-v2`
/// descriptor.
///
/// # Errors
///
/// A [`LuoError`] naming the session, file or FLB and the field. On error
/// nothing stays claimed.
pub fn restore<P>(p: &P, blob: PhysAddr, size: u64) -> Result<RestoredLuo, LuoError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let mut held = Held::default();
    match decode(p, blob, size, &mut held) {
        Ok(luo) => Ok(RestoredLuo { luo, held }),
        Err(e) => {
            held.unclaim(p);
            Err(e)
        }
    }
}

/// Decodes the LUO state with every check of [`restore`], then gives every
/// claim back: the tracker ends as it started, and nothing is allocated or
/// freed. This is the entry point for inspection tools (`kho inspect` over
/// a machine image).
///
/// `p` is the platform joined with the incoming tracker (for kho-track,
/// `WithTracker::new(&mem, &incoming)`).
pub fn inspect<P>(p: &P, blob: PhysAddr, size: u64) -> Result<Luo, LuoError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let probe = Probe::new(p);
    let result = restore(&probe, blob, size).map(|r| r.luo);
    probe.release();
    result
}

fn decode<P>(p: &P, blob: PhysAddr, size: u64, held: &mut Held) -> Result<Luo, LuoError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bad_blob = |field, fault| LuoError::Blob { pa: blob, field, fault };
    let need = size_of::<LuoSer>() as u64;
    if size < need {
        return Err(bad_blob("blob-size", Fault::TooShort { len: size, need }));
    }
    if !blob.is_page_aligned() {
        return Err(bad_blob("blob address", Fault::Misaligned(blob)));
    }
    let max_bytes = p.max_order().pages() * PAGE_SIZE as u64;
    if size > max_bytes {
        return Err(bad_blob("blob-size", Fault::OutOfRange { value: size, max: max_bytes }));
    }
    // The block preserved at the blob's address, whatever its order, must
    // hold the blob (7.2 keeps it in an order-0 page).
    let order = kho_probe::claim_block(p, blob, size).map_err(|e| bad_blob("blob address", Fault::NotPreserved(e)))?;
    held.pages.push((blob, order));
    let ser: LuoSer = read_phys(p, blob).map_err(|e| bad_blob("blob address", Fault::NotRam(e)))?;
    if ser.compatible != LUO_V5_BYTES {
        return Err(LuoError::Compatible { found: ser.compatible });
    }
    let sessions_pa = PhysAddr::new(ser.sessions_pa);
    let set = BlockSet::<SessionSer>::restore(p, sessions_pa).map_err(LuoError::Sessions)?;
    let session_blocks = block_pages(p, sessions_pa, set.blocks())?;
    let entries = set.iter(p).collect::<Result<Vec<_>, _>>().map_err(LuoError::Sessions);
    held.sessions = Some(set);
    let entries = entries?;
    let mut sessions = Vec::with_capacity(entries.len());
    let mut names: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (index, s) in entries.iter().enumerate() {
        let at = || SessionAt { index, name: lossy(&s.name) };
        let name = c_name(&s.name).map_err(|f| LuoError::Session { at: at(), field: "name", fault: f.into() })?;
        if let Some(&first) = names.get(name) {
            return Err(LuoError::Session { at: at(), field: "name", fault: Fault::Duplicate { first } });
        }
        names.insert(name, index);
        let files_pa = PhysAddr::new(s.files);
        let files = BlockSet::<FileSer>::restore(p, files_pa).map_err(|source| LuoError::Files { at: at(), source })?;
        let chain = files.len();
        let read = files.iter(p).collect::<Result<Vec<_>, _>>();
        let blocks = files.blocks();
        held.file_sets.push(files);
        let read = read.map_err(|source| LuoError::Files { at: at(), source })?;
        let file_blocks = block_pages(p, files_pa, blocks)?;
        if s.count != chain as u64 {
            return Err(LuoError::Session {
                at: at(),
                field: "count",
                fault: Fault::CountMismatch { count: s.count, chain },
            });
        }
        let files = decode_files(&read, &at)?;
        sessions.push(Session {
            name: String::from_utf8_lossy(name).into_owned(),
            raw_name: name.to_vec(),
            files_pa,
            file_blocks,
            files,
        });
    }
    let flbs = decode_flbs(p, PhysAddr::new(ser.flbs_pa), held)?;
    Ok(Luo { blob, blob_order: order, liveupdate_num: ser.liveupdate_num, sessions_pa, session_blocks, sessions, flbs })
}

fn decode_files(read: &[FileSer], at: &dyn Fn() -> SessionAt) -> Result<Vec<File>, LuoError> {
    let mut tokens: BTreeMap<u64, usize> = BTreeMap::new();
    let mut files = Vec::with_capacity(read.len());
    for (index, f) in read.iter().enumerate() {
        let token = f.token;
        let bad = |field, fault| LuoError::File { at: at(), index, token, field, fault };
        let compatible = c_name(&f.compatible).map_err(|e| bad("compatible", e.into()))?;
        if let Some(&first) = tokens.get(&token) {
            return Err(bad("token", Fault::Duplicate { first }));
        }
        tokens.insert(token, index);
        files.push(File { compatible: String::from_utf8_lossy(compatible).into_owned(), data: f.data, token });
    }
    Ok(files)
}

fn decode_flbs<P>(p: &P, pa: PhysAddr, held: &mut Held) -> Result<Option<Flbs>, LuoError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    if pa.is_null() {
        return Ok(None);
    }
    let bad = |field, fault| LuoError::Flbs { pa, field, fault };
    if !pa.is_page_aligned() {
        return Err(bad("flbs_pa", Fault::Misaligned(pa)));
    }
    let header: FlbHeader = read_phys(p, pa).map_err(|e| bad("flbs_pa", Fault::NotRam(e)))?;
    let max_pages = p.max_order().pages();
    if header.pgcnt == 0 || header.pgcnt > max_pages {
        return Err(bad("pgcnt", Fault::OutOfRange { value: header.pgcnt, max: max_pages }));
    }
    // PANICS: none; pgcnt <= 2^max_order, so the order is at most max_order.
    let order = Order::new(u64::from(order_for(header.pgcnt)), "FLB order").map_err(LuoError::Platform)?;
    p.claim(pa, order).map_err(|e| bad("flbs_pa", Fault::NotPreserved(e)))?;
    held.pages.push((pa, order));
    let room = (header.pgcnt * PAGE_SIZE as u64 - size_of::<FlbHeader>() as u64) / size_of::<FlbSer>() as u64;
    if header.count > room {
        return Err(bad("count", Fault::OutOfRange { value: header.count, max: room }));
    }
    let mut entries = Vec::with_capacity(header.count as usize);
    let mut names: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for index in 0..header.count as usize {
        let at = pa.as_u64() + (size_of::<FlbHeader>() + index * size_of::<FlbSer>()) as u64;
        let e: FlbSer = read_phys(p, PhysAddr::new(at)).map_err(|e| bad("count", Fault::NotRam(e)))?;
        let flb = |fault| LuoError::Flb { index, name: lossy(&e.name), field: "name", fault };
        let name = c_name(&e.name).map_err(|f| flb(f.into()))?;
        if let Some(&first) = names.get(name) {
            return Err(flb(Fault::Duplicate { first }));
        }
        names.insert(name.to_vec(), index);
        entries.push(Flb { name: String::from_utf8_lossy(name).into_owned(), data: e.data, count: e.count });
    }
    Ok(Some(Flbs { pa, pgcnt: header.pgcnt, entries }))
}

/// The block pages of a chain `restore` validated: `n` blocks from `head`.
fn block_pages<P: PhysMem + ?Sized>(p: &P, head: PhysAddr, n: usize) -> Result<Vec<PhysAddr>, LuoError> {
    let mut out = Vec::with_capacity(n);
    let mut pa = head;
    for _ in 0..n {
        out.push(pa);
        let h: BlockHeader = read_phys(p, pa).map_err(|e: AbiError| LuoError::Platform(e))?;
        pa = PhysAddr::new(h.next);
    }
    Ok(out)
}

/// A fixed-size name for an error message: up to its NUL, lossy.
fn lossy(array: &[u8]) -> String {
    let end = array.iter().position(|&b| b == 0).unwrap_or(array.len());
    String::from_utf8_lossy(&array[..end]).to_string()
}

const _: () = assert!(FILE_COMPATIBLE_LEN == 48);

#[cfg(test)]
mod tests {
    use super::order_for;

    #[test]
    fn orders() {
        assert_eq!(order_for(0), 0);
        assert_eq!(order_for(1), 0);
        assert_eq!(order_for(2), 1);
        assert_eq!(order_for(3), 2);
        assert_eq!(order_for(4), 2);
        assert_eq!(order_for(1024), 10);
        assert_eq!(order_for(1025), 11);
    }
}
