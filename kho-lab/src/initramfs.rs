//! Builds the guest programs (static) and the initramfs that carries them.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::{Kind, Writer};
use crate::elf;

/// The guest's Rust target.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The init script: mount what the agent reads, then hand over to it.
pub const INIT: &str = "#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
exec /agent
";

/// The static guest programs.
pub struct GuestBins {
    /// kho-lab-agent.
    pub agent: PathBuf,
    /// kho (kho-cli).
    pub kho: PathBuf,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Builds the agent and `kho` as static executables into `target_dir`.
pub fn build_guest(workspace: &Path, target_dir: &Path) -> Result<GuestBins, String> {
    eprintln!("kho-lab: building the static guest programs into {}", target_dir.display());
    let status = Command::new(cargo())
        .current_dir(workspace)
        .args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"])
        .arg(target_dir)
        .args(["-p", "kho-lab-agent", "--bin", "kho-lab-agent", "-p", "kho-cli", "--bin", "kho"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the guest programs failed ({status})"));
    }
    let dir = target_dir.join(GUEST_TARGET).join("release");
    let bins = GuestBins { agent: dir.join("kho-lab-agent"), kho: dir.join("kho") };
    for b in [&bins.agent, &bins.kho] {
        if !elf::is_static(b).map_err(|e| e.to_string())? {
            return Err(format!("{} is not statically linked", b.display()));
        }
    }
    Ok(bins)
}

/// The host's static busybox (package busybox-static).
pub fn find_busybox() -> Result<PathBuf, String> {
    for p in ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"] {
        let p = Path::new(p);
        if p.is_file() {
            return match elf::is_static(p) {
                Ok(true) => Ok(p.to_path_buf()),
                Ok(false) => Err(format!("{} is dynamically linked: install busybox-static", p.display())),
                Err(e) => Err(e.to_string()),
            };
        }
    }
    Err("busybox not found: install busybox-static".into())
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes the initramfs (uncompressed newc cpio) to `out`.
pub fn write(out: &Path, busybox: &Path, bins: &GuestBins, kernel: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", out.display());
    let file = fs::File::create(out).map_err(io)?;
    let mut w = Writer::new(BufWriter::new(file));
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        w.entry(d, Kind::Dir, 0o755, &[]).map_err(io)?;
    }
    w.entry("dev/console", Kind::CharDev { major: 5, minor: 1 }, 0o600, &[]).map_err(io)?;
    w.entry("bin/busybox", Kind::File, 0o755, &read(busybox)?).map_err(io)?;
    for applet in ["sh", "mount"] {
        w.entry(&format!("bin/{applet}"), Kind::Symlink, 0o777, b"busybox").map_err(io)?;
    }
    w.entry("init", Kind::File, 0o755, INIT.as_bytes()).map_err(io)?;
    w.entry("agent", Kind::File, 0o755, &read(&bins.agent)?).map_err(io)?;
    w.entry("kho", Kind::File, 0o755, &read(&bins.kho)?).map_err(io)?;
    w.entry("bzImage", Kind::File, 0o644, &read(kernel)?).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(())
}
