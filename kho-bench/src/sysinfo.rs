//! What the report says about where and when it was measured: CPU, cores,
//! RAM, kernel, commit and date.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine a report was measured on.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// Total RAM in bytes, if known.
    pub ram: Option<u64>,
    /// Kernel release.
    pub kernel: String,
    /// The 1-minute load average when the run started and when it ended.
    pub load: (Option<f64>, Option<f64>),
}

impl MachineInfo {
    /// Reads `/proc` (falls back to "unknown" field by field).
    pub fn probe() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        MachineInfo {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram: mem_total(&meminfo),
            kernel,
            load: (None, None),
        }
    }
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The first field of a `/proc/loadavg` text.
pub fn parse_loadavg(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// The first `model name` of a `/proc/cpuinfo` text (some architectures
/// name it `Processor` or `cpu model`).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Processor", "cpu model", "cpu"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The commit of the checkout at `dir`: `git rev-parse HEAD`, with `-dirty`
/// when tracked files differ from it; a note when git or the repository is
/// missing.
pub fn commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if s.is_empty() => head,
            Some(_) => format!("{head}-dirty"),
            None => format!("{head} (dirty state unknown)"),
        },
        _ => "unknown (git or the repository not available)".into(),
    }
}

/// Days since 1970-01-01 as a proleptic Gregorian `(year, month, day)`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// Now, as [`format_utc`].
pub fn now_utc() -> String {
    format_utc(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 (a leap day of a year divisible by 400) is day 11016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn proc_parsing() {
        let cpu = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("Processor\t: ARMv8 rev 1\n").as_deref(), Some("ARMv8 rev 1"));
        assert_eq!(cpu_model("flags: fpu\n"), None);
        assert_eq!(mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), Some(24_576_000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_loadavg("2.11 1.91 1.45 3/210 6468\n"), Some(2.11));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn commit_outside_a_repository_is_not_an_error() {
        let dir = std::env::temp_dir().join(format!("kho-bench-no-git-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // With GIT_DIR unset and no repository above the temp dir this is
        // "unknown"; inside one (unusual) it is a commit. Either way it
        // returns instead of failing.
        let c = commit(&dir);
        assert!(c.starts_with("unknown") || c.len() >= 40, "{c}");
        let _ = std::fs::remove_dir(&dir);
    }
}
