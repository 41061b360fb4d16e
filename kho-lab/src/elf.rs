//! Just enough ELF64 to read a QEMU dump by physical address and to tell a
//! static executable from a dynamic one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

/// One program header.
#[derive(Debug, Clone, Copy)]
struct Phdr {
    p_type: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn bad(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
}

/// Parses the program headers of a little-endian ELF64 file held in `file`.
fn phdrs(file: &File, path: &Path) -> io::Result<Vec<Phdr>> {
    let mut eh = [0u8; 64];
    file.read_exact_at(&mut eh, 0).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err(bad(path, "not a little-endian ELF64 file"));
    }
    let phoff = le_u64(&eh, 32);
    let phentsize = u64::from(le_u16(&eh, 54));
    let phnum = u64::from(le_u16(&eh, 56));
    if phentsize < 56 || phnum > 4096 {
        return Err(bad(path, "implausible program header table"));
    }
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).map_err(|_| bad(path, "header table too large"))?];
    file.read_exact_at(&mut table, phoff).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(table
        .chunks_exact(phentsize as usize)
        .map(|h| Phdr { p_type: le_u32(h, 0), offset: le_u64(h, 8), paddr: le_u64(h, 24), filesz: le_u64(h, 32) })
        .collect())
}

/// Whether the ELF executable at `path` is statically linked (no `PT_INTERP`).
pub fn is_static(path: &Path) -> io::Result<bool> {
    let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(!phdrs(&file, path)?.iter().any(|p| p.p_type == PT_INTERP))
}

/// A machine image (ELF core whose `PT_LOAD`s carry physical addresses).
pub struct Image {
    path: PathBuf,
    file: File,
    loads: Vec<Phdr>,
}

impl Image {
    /// Opens an image.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let loads = phdrs(&file, path)?.into_iter().filter(|p| p.p_type == PT_LOAD).collect();
        Ok(Image { path: path.to_path_buf(), file, loads })
    }

    /// Reads `len` bytes at physical address `pa`; None if they are not all
    /// inside one segment's file contents.
    pub fn read_pa(&self, pa: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let end = pa.checked_add(len as u64).ok_or_else(|| bad(&self.path, "PA range overflows"))?;
        let Some(seg) = self.loads.iter().find(|p| p.paddr <= pa && end <= p.paddr.saturating_add(p.filesz)) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, seg.offset + (pa - seg.paddr))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        Ok(Some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 core with one PT_LOAD of `data` at `pa`.
    pub fn tiny_core(pa: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let h = 64;
        f[h..h + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[h + 8..h + 16].copy_from_slice(&120u64.to_le_bytes());
        f[h + 24..h + 32].copy_from_slice(&pa.to_le_bytes());
        f[h + 32..h + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn reads_by_physical_address() {
        let dir = std::env::temp_dir().join(format!("kho-lab-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("core");
        std::fs::write(&path, tiny_core(0x1000, &[1, 2, 3, 4, 5, 6])).unwrap();
        let img = Image::open(&path).unwrap();
        assert_eq!(img.read_pa(0x1002, 3).unwrap(), Some(vec![3, 4, 5]));
        assert_eq!(img.read_pa(0x1004, 3).unwrap(), None);
        assert_eq!(img.read_pa(0x0, 1).unwrap(), None);
        assert!(is_static(&path).unwrap());
        std::fs::write(&path, b"not an elf, long enough to hold a header of sixty-four bytes......").unwrap();
        assert!(Image::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
