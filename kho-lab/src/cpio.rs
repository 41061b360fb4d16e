//! A writer of `newc` cpio archives, the format of a Linux initramfs.

use std::io::{self, Write};

/// What an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (its data is the target).
    Symlink,
    /// A character device node.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// A `newc` archive being written.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Writer { out, written: 0, next_ino: 1 }
    }

    /// Appends an entry named `name` (no leading slash) with permission bits `perm`.
    pub fn entry(&mut self, name: &str, kind: Kind, perm: u32, data: &[u8]) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad cpio entry name {name:?}")));
        }
        if !matches!(kind, Kind::File | Kind::Symlink) && !data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: only files and links carry data"),
            ));
        }
        let (type_bits, rdev) = match kind {
            Kind::Dir => (0o040000, (0, 0)),
            Kind::File => (0o100000, (0, 0)),
            Kind::Symlink => (0o120000, (0, 0)),
            Kind::CharDev { major, minor } => (0o020000, (major, minor)),
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        self.raw(name, ino, type_bits | (perm & 0o7777), nlink, data, rdev)
    }

    fn raw(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, data: &[u8], rdev: (u32, u32)) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: larger than 4 GiB")))?;
        let namesize =
            u32::try_from(name.len() + 1).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..n as usize])
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.raw("TRAILER!!!", 0, 0, 1, &[], (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (name, mode, rdev, data) of every entry, checking alignment.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    fn parse(mut a: &[u8]) -> Vec<Entry> {
        let total = a.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - a.len()) % 4, 0, "header not 4-aligned");
            assert_eq!(&a[..6], b"070701");
            let field =
                |i: usize| u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6) as usize, field(9), field(10), field(11) as usize);
            let name = std::str::from_utf8(&a[110..110 + namesize - 1]).unwrap().to_string();
            assert_eq!(a[110 + namesize - 1], 0);
            let data_at = (110 + namesize).div_ceil(4) * 4;
            let data = a[data_at..data_at + size].to_vec();
            let next = (data_at + size).div_ceil(4) * 4;
            a = &a[next..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty());
                return out;
            }
            out.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn writes_entries_that_read_back() {
        let mut w = Writer::new(Vec::new());
        w.entry("dev", Kind::Dir, 0o755, &[]).unwrap();
        w.entry("dev/console", Kind::CharDev { major: 5, minor: 1 }, 0o600, &[]).unwrap();
        w.entry("bin/sh", Kind::Symlink, 0o777, b"busybox").unwrap();
        w.entry("init", Kind::File, 0o755, b"#!/bin/sh\n").unwrap();
        w.entry("odd", Kind::File, 0o644, &[7; 5]).unwrap();
        let a = w.finish().unwrap();
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].0, "dev");
        assert_eq!(e[0].1, 0o040755);
        assert_eq!(e[1].1, 0o020600);
        assert_eq!(e[1].2, (5, 1));
        assert_eq!((e[2].1, e[2].3.as_slice()), (0o120777, &b"busybox"[..]));
        assert_eq!((e[3].1, e[3].3.as_slice()), (0o100755, &b"#!/bin/sh\n"[..]));
        assert_eq!(e[4].3, vec![7; 5]);
    }

    #[test]
    fn refuses_bad_entries() {
        let mut w = Writer::new(Vec::new());
        assert!(w.entry("/abs", Kind::File, 0o644, &[]).is_err());
        assert!(w.entry("", Kind::File, 0o644, &[]).is_err());
        assert!(w.entry("d", Kind::Dir, 0o755, b"x").is_err());
    }
}
