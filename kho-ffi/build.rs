//! Writes the header cargo-c installs: `include/kho.h` as checked in, with
//! the page-size macro of this build defined at its top, so that a C
//! program built against the installed 16 or 64 KiB archive gets that
//! archive's page size from the header alone.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = manifest.join("include/kho.h");
    println!("cargo:rerun-if-changed={}", source.display());
    let header = std::fs::read_to_string(&source).expect("kho-ffi/include/kho.h is readable");
    let define = if std::env::var_os("CARGO_FEATURE_PAGE_64K").is_some() {
        Some("KHO_PAGE_64K")
    } else if std::env::var_os("CARGO_FEATURE_PAGE_16K").is_some() {
        Some("KHO_PAGE_16K")
    } else {
        None
    };
    let guard = "#define KHO_H\n";
    let installed = match define {
        Some(m) => {
            let at = header.find(guard).expect("kho.h has its include guard") + guard.len();
            format!(
                "{}\n/* This copy describes the archive built for its page size. */\n#ifndef {m}\n#define {m} 1\n#endif\n{}",
                &header[..at],
                &header[at..]
            )
        }
        None => header,
    };
    std::fs::write(out.join("kho.h"), installed).expect("writing the installed header");
}
