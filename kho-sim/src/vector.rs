//! The repository's test vectors (`tests/vectors/NAME.zst`, machine images
//! compressed with zstd), unpacked for tests.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Decompresses the vector `src` (a `.zst` file) into `dir` once and
/// returns the path of the image. Runs of zero bytes become file holes, so
/// a large machine image costs little disk. Safe to call from several
/// tests and processes at once: each writes a file of its own and renames
/// it into place.
///
/// # Panics
///
/// If `src` cannot be read or is not zstd, or `dir` cannot be written: it
/// is meant for tests.
pub fn unpack(src: &Path, dir: &Path) -> PathBuf {
    let name = src.file_stem().and_then(|n| n.to_str()).expect("a vector file name").to_string();
    std::fs::create_dir_all(dir).expect("creating the vector directory");
    let out = dir.join(&name);
    let stamp = dir.join(format!("{name}.done"));
    let src_len = std::fs::metadata(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())).len();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&src_len.to_string()) && out.exists() {
        return out;
    }
    let part = dir.join(format!("{name}.{}.{:?}.part", std::process::id(), std::thread::current().id()));
    let input = std::fs::File::open(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut dec = ruzstd::decoding::StreamingDecoder::new(std::io::BufReader::new(input))
        .unwrap_or_else(|e| panic!("{}: not zstd: {e}", src.display()));
    let mut file = std::fs::File::create(&part).expect("creating the unpacked vector");
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match dec.read(&mut buf[filled..]).expect("decompressing the vector") {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64)).expect("seeking");
        } else {
            file.write_all(&buf[..filled]).expect("writing the unpacked vector");
        }
        len += filled as u64;
    }
    file.set_len(len).expect("sizing the unpacked vector");
    drop(file);
    std::fs::rename(&part, &out).expect("placing the unpacked vector");
    std::fs::write(&stamp, src_len.to_string()).expect("stamping the unpacked vector");
    out
}
