//! The producer scenario (`kho_lab.producer=1`): in the first kernel, the
//! agent hands memory to the next one with `kho kexec` (`kexec_load`, no
//! KHO in the loading path) instead of LUO's own preservation. The memfds
//! are files holding the same patterns LUO's memfds would, in sessions of
//! the same names, so the next kernel's agent verifies them unchanged.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::out::Line;
use crate::scenario::{self, Scenario};
use kho_lab_agent::pattern;

/// Where the static `kho` lives in the initramfs.
const KHO: &str = "/kho";

/// `reserve_mem=SIZE:ALIGN:NAME` words of a command line, as
/// `(name, size, align)`.
pub fn reserve_mem(cmdline: &str) -> Vec<(String, u64, u64)> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("reserve_mem="))
        .filter_map(|v| {
            let mut it = v.split(':');
            let (size, align, name) = (it.next()?, it.next()?, it.next()?);
            Some((name.to_string(), parse_size(size)?, parse_size(align)?))
        })
        .collect()
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The value of `key=` on the command line.
fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn write_pattern(path: &str, seed: u64, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; size as usize];
    pattern::fill(seed, 0, &mut buf);
    fs::write(path, buf)
}

/// Writes the memfd and region files and returns `kho kexec`'s arguments
/// (without the mode flags).
fn arguments(s: &Scenario, cmdline: &str, next_cmdline: &str) -> io::Result<Vec<String>> {
    let mut args: Vec<String> =
        ["kexec", "--kernel", "/bzImage", "--initrd", "/sys/firmware/initrd"].iter().map(|a| a.to_string()).collect();
    args.push("--command-line".into());
    args.push(next_cmdline.into());
    if let Some(size) = param(cmdline, "test_kho.max_mem") {
        args.push("--test-data".into());
        args.push(size.into());
    }
    for m in &s.memfds {
        let name = scenario::session_name(s.phase, m.session);
        let path = format!("/tmp/{name}-{}", m.token);
        write_pattern(&path, pattern::seed(&name, m.token, s.phase), m.size)?;
        args.push("--memfd".into());
        args.push(format!("{name}:{}:{path}:{}", m.token, m.pos));
    }
    for (name, size, align) in reserve_mem(cmdline) {
        let path = format!("/tmp/reserve-{name}");
        write_pattern(&path, pattern::region_seed(&name), size)?;
        args.push("--reserve-mem".into());
        args.push(format!("{name}:{size}:{align}:{path}"));
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    args.push("--release".into());
    args.push(format!("{}+kho", release.trim()));
    args.push("--json".into());
    Ok(args)
}

fn run_kho(args: &[String]) -> io::Result<(i32, String, String)> {
    let out = Command::new(KHO).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Tries an unsafe plan (a scratch area far too small) with `--dry-run`;
/// reports whether `kho` refused it as it must (exit 2, kind
/// `scratch_too_small`).
pub fn try_unsafe_plan(s: &Scenario, cmdline: &str, next: &str) -> bool {
    let mut args = match arguments(s, cmdline, next) {
        Ok(a) => a,
        Err(e) => {
            Line::new("refusal").bool("ok", false).str("why", &format!("writing the files: {e}")).emit();
            return false;
        }
    };
    args.extend(["--scratch-size".into(), "32M".into(), "--dry-run".into(), "/tmp/unsafe-plan".into()]);
    match run_kho(&args) {
        Ok((code, stdout, stderr)) => {
            let ok = code == 2 && stdout.contains("\"scratch_too_small\"");
            Line::new("refusal")
                .bool("ok", ok)
                .int("exit", i64::from(code))
                .str("stdout", &stdout)
                .str("stderr", &stderr)
                .emit();
            ok
        }
        Err(e) => {
            Line::new("refusal").bool("ok", false).str("why", &format!("running {KHO}: {e}")).emit();
            false
        }
    }
}

/// Runs `kho kexec` as user 65534 (no `CAP_SYS_BOOT`) with a real plan
/// and the memory map given (an unprivileged user cannot read
/// `/proc/iomem`'s addresses): `kexec_load` must refuse, and `kho` must
/// say so in one clear error, exit 1, having loaded nothing.
pub fn try_without_permission(s: &Scenario, cmdline: &str, next: &str) -> bool {
    let mut args = match arguments(s, cmdline, next) {
        Ok(a) => a,
        Err(e) => {
            Line::new("noperm").bool("ok", false).str("why", &format!("writing the files: {e}")).emit();
            return false;
        }
    };
    // The initrd in sysfs is root's alone: leave it out here.
    if let Some(i) = args.iter().position(|a| a == "--initrd") {
        args.drain(i..i + 2);
    }
    args.extend(["--ram".into(), "0x100000:0x3fee0000".into()]);
    let out = Command::new(KHO).args(&args).uid(65534).gid(65534).output();
    match out {
        Ok(o) => {
            let code = o.status.code().unwrap_or(-1);
            let stdout = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let ok = code == 1
                && !stdout.contains("\"ok\":true")
                && stdout.contains("\"kexec_load\"")
                && stdout.contains("CAP_SYS_BOOT");
            Line::new("noperm").bool("ok", ok).int("exit", i64::from(code)).str("stdout", &stdout).emit();
            ok
        }
        Err(e) => {
            Line::new("noperm").bool("ok", false).str("why", &format!("running {KHO} as uid 65534: {e}")).emit();
            false
        }
    }
}

/// Builds and loads the handover with `kho kexec` and reports its plan;
/// the caller then reboots into the loaded kernel.
pub fn load(s: &Scenario, cmdline: &str, next: &str) -> Result<(), String> {
    let args = arguments(s, cmdline, next).map_err(|e| format!("writing the files: {e}"))?;
    let (code, stdout, stderr) = run_kho(&args).map_err(|e| format!("running {KHO}: {e}"))?;
    Line::new("produce").int("exit", i64::from(code)).str("json", &stdout).str("stderr", &stderr).emit();
    if code != 0 {
        return Err(format!("kho kexec exited {code}: {stderr}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reserve_mem_and_params() {
        let c = "a reserve_mem=4M:4096:lab_p x=1 reserve_mem=2M:2M:b test_kho.max_mem=1048576";
        assert_eq!(reserve_mem(c), vec![("lab_p".into(), 4 << 20, 4096), ("b".into(), 2 << 20, 2 << 20)]);
        assert_eq!(param(c, "test_kho.max_mem"), Some("1048576"));
        assert_eq!(param(c, "x"), Some("1"));
        assert_eq!(param(c, "test_kho"), None);
    }
}
