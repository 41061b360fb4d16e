//! Reduces a machine image to the pages `kho inspect` needs, for test
//! vectors: a 1 GiB QEMU dump becomes a few MiB.
//!
//! ```text
//! cargo run --release -p kho-cli --example reduce -- IN OUT
//! ```
//!
//! Kept: every page the chosen handover preserves, its tree pages, every
//! candidate root FDT page and the first page of each candidate's memory
//! map (where a stale tree's import stops), the blobs of every subtree, and
//! the pages where the scratch search found an array or a `kho_data`.
//! Every other page of RAM reads as zero: the output keeps the input's
//! `PT_LOAD` coverage (so RAM is the same), but a run of dropped pages is a
//! segment with no file bytes (`p_filesz` 0, zero fill). Notes are copied.
//! The output is then inspected and must give the same report as the
//! input (but for the path and the number of segments), or the tool fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use kho_abi::{Order, PAGE_SIZE, PhysAddr};
use kho_cli::find::FindOptions;
use kho_cli::image::{Image, OpenOptions};
use kho_cli::load::{Request, load_handover};
use kho_cli::progress::Progress;
use kho_cli::scratch::find_scratch;
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::endian::{U16, U32, U64};
use object::read::elf::{FileHeader, ProgramHeader};

const PAGE: u64 = PAGE_SIZE as u64;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else { return Err("usage: reduce IN OUT".into()) };
    let (input, output) = (PathBuf::from(input), PathBuf::from(output));
    let keep = pages_to_keep(&input)?;
    write_reduced(&input, &output, &keep)?;
    let before = report(&input)?;
    let after = report(&output)?;
    if before != after {
        return Err(format!("the reduced image reads differently:\n{before}\n---\n{after}"));
    }
    let len = std::fs::metadata(&output).map_err(|e| e.to_string())?.len();
    println!("{}: {} pages kept, {len} bytes; same report as {}", output.display(), keep.len(), input.display());
    Ok(())
}

fn request(path: &Path, fdt: Option<u64>) -> Request {
    Request {
        path: path.to_path_buf(),
        open: OpenOptions { max_order: Order::new(18, "max order").expect("valid"), ram: Vec::new() },
        find: FindOptions { fdt, scratch: Vec::new() },
        want_runs: false,
    }
}

/// The JSON report without what differs by construction.
fn report(path: &Path) -> Result<String, String> {
    let progress = Progress::new(false);
    let mut v = match load_handover(&request(path, None), &progress) {
        Ok((_, a)) => serde_json::to_value(&a.report).map_err(|e| e.to_string())?,
        Err(f) => serde_json::json!({ "failure": f.failure.message(), "candidates": f.candidates }),
    };
    if let Some(image) = v.get_mut("image").and_then(|i| i.as_object_mut()) {
        image.remove("path");
        image.remove("load_segments");
    }
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

fn pages_to_keep(input: &Path) -> Result<BTreeSet<u64>, String> {
    let progress = Progress::new(false);
    let mut keep = BTreeSet::new();
    let span = |keep: &mut BTreeSet<u64>, pa: u64, len: u64| {
        let mut p = pa & !(PAGE - 1);
        while p < pa.saturating_add(len.max(1)) {
            keep.insert(p);
            p += PAGE;
        }
    };
    let (image, chosen) = load_handover(&request(input, None), &progress).map_err(|f| f.failure.message())?;
    let mut roots: Vec<u64> = chosen.report.root.candidates.iter().map(|c| c.fdt_pa).collect();
    roots.push(chosen.report.root.fdt_pa);
    for &fdt in &roots {
        span(&mut keep, fdt, PAGE);
        let mut page = vec![0u8; PAGE_SIZE];
        if image.read_original(fdt & !(PAGE - 1), &mut page).is_some()
            && let Ok(root) = kho_track::fdt::RootFdt::parse(PhysAddr::new(fdt), page)
        {
            span(&mut keep, root.memory_map().as_u64(), PAGE);
        }
        // Each candidate's own handover, when it imports.
        if let Ok((img, a)) = load_handover(&request(input, Some(fdt)), &progress) {
            for &(s, e) in &a.ranges {
                span(&mut keep, s, e - s);
            }
            for &p in &a.map_pages {
                span(&mut keep, p, PAGE);
            }
            for s in &a.report.subtrees {
                if let Some(pa) = s.pa {
                    span(&mut keep, pa, s.size.unwrap_or(PAGE).min(1 << 20));
                }
            }
            let found = find_scratch(&img, fdt);
            for &at in &found.seen_at {
                span(&mut keep, at, PAGE);
            }
        }
    }
    drop(image);
    Ok(keep)
}

/// Writes `input` with only the `keep` pages of its RAM carrying bytes.
fn write_reduced(input: &Path, output: &Path, keep: &BTreeSet<u64>) -> Result<(), String> {
    let data = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let ehdr = FileHeader64::<LE>::parse(&data[..]).map_err(|e| e.to_string())?;
    let phdrs = ehdr.program_headers(LE, &data[..]).map_err(|e| e.to_string())?;
    // Output segments: (paddr, memsz, source file offset or None for zero).
    let mut loads: Vec<(u64, u64, Option<u64>)> = Vec::new();
    let mut notes: Vec<&[u8]> = Vec::new();
    for ph in phdrs {
        match ph.p_type(LE) {
            elf::PT_NOTE => {
                let (o, n) = (ph.p_offset(LE) as usize, ph.p_filesz(LE) as usize);
                notes.push(&data[o..o + n]);
            }
            elf::PT_LOAD => {
                let (pa, memsz, off, filesz) = (ph.p_paddr(LE), ph.p_memsz(LE), ph.p_offset(LE), ph.p_filesz(LE));
                let mut p = pa;
                while p < pa + memsz {
                    let page_end = ((p & !(PAGE - 1)) + PAGE).min(pa + memsz);
                    let kept = keep.contains(&(p & !(PAGE - 1))) && p - pa < filesz;
                    let len = page_end - p;
                    let src = kept.then_some(off + (p - pa));
                    match loads.last_mut() {
                        Some(last) if last.0 + last.1 == p && last.2.is_some() == kept => {
                            last.1 += len;
                        }
                        _ => loads.push((p, len, src)),
                    }
                    p = page_end;
                }
            }
            _ => {}
        }
    }
    let phnum = loads.len() + notes.len();
    let head_len = 64 + 56 * phnum as u64;
    let mut out: Vec<u8> = Vec::new();
    let hdr = FileHeader64::<LE> {
        e_ident: ehdr.e_ident,
        e_type: U16::new(LE, elf::ET_CORE),
        e_machine: ehdr.e_machine,
        e_version: U32::new(LE, u32::from(elf::EV_CURRENT)),
        e_entry: U64::new(LE, 0),
        e_phoff: U64::new(LE, 64),
        e_shoff: U64::new(LE, 0),
        e_flags: U32::new(LE, 0),
        e_ehsize: U16::new(LE, 64),
        e_phentsize: U16::new(LE, 56),
        e_phnum: U16::new(LE, u16::try_from(phnum).map_err(|_| "too many segments")?),
        e_shentsize: U16::new(LE, 0),
        e_shnum: U16::new(LE, 0),
        e_shstrndx: U16::new(LE, 0),
    };
    out.extend_from_slice(object::pod::bytes_of(&hdr));
    let ph = |p_type, offset, addr, filesz, memsz| ProgramHeader64::<LE> {
        p_type: U32::new(LE, p_type),
        p_flags: U32::new(LE, elf::PF_R | elf::PF_W),
        p_offset: U64::new(LE, offset),
        p_vaddr: U64::new(LE, addr),
        p_paddr: U64::new(LE, addr),
        p_filesz: U64::new(LE, filesz),
        p_memsz: U64::new(LE, memsz),
        p_align: U64::new(LE, 0),
    };
    let mut off = head_len;
    for n in &notes {
        out.extend_from_slice(object::pod::bytes_of(&ph(elf::PT_NOTE, off, 0, n.len() as u64, 0)));
        off += n.len() as u64;
    }
    for &(pa, len, src) in &loads {
        let filesz = if src.is_some() { len } else { 0 };
        out.extend_from_slice(object::pod::bytes_of(&ph(elf::PT_LOAD, off, pa, filesz, len)));
        off += filesz;
    }
    for n in &notes {
        out.extend_from_slice(n);
    }
    for &(_, len, src) in &loads {
        if let Some(o) = src {
            out.extend_from_slice(&data[o as usize..(o + len) as usize]);
        }
    }
    let mut f = std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    f.write_all(&out).map_err(|e| e.to_string())?;
    // The image reader would be given the same pages: check it opens.
    Image::open(output, Order::new(18, "max order").expect("valid")).map_err(|e| e.to_string())?;
    Ok(())
}
