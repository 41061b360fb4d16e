//! Scenarios: what one lab run boots and preserves.

use serde::{Deserialize, Serialize};

/// A `reserve_mem=SIZE:ALIGN:NAME` region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveMem {
    /// Size in bytes.
    pub size: u64,
    /// Alignment in bytes.
    pub align: u64,
    /// Region name.
    pub name: String,
}

/// A memfd the agent preserves in every handing-over phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memfd {
    /// Session index.
    pub session: u32,
    /// LUO token.
    pub token: u64,
    /// Size in bytes.
    pub size: u64,
    /// File position.
    pub pos: u64,
}

/// One lab run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    /// Name (also the run's directory).
    pub name: String,
    /// Kernels in the chain: 2 = A→B, 3 = A→B→C.
    pub phases: u32,
    /// `test_kho.max_mem=` in bytes (None: the kernel's default).
    pub test_kho_max_mem: Option<u64>,
    /// `reserve_mem=` regions.
    pub reserve_mem: Vec<ReserveMem>,
    /// Memfds.
    pub memfds: Vec<Memfd>,
    /// Kernel A hands over with `kho kexec` (a handover kho writes,
    /// loaded with `kexec_load`) instead of its own KHO and LUO.
    #[serde(default)]
    pub producer: bool,
}

/// Parses a size with an optional K/M/G suffix (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let v: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    v.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

fn size_text(v: u64) -> String {
    if v != 0 && v.is_multiple_of(1 << 20) {
        format!("{}M", v >> 20)
    } else if v != 0 && v.is_multiple_of(1024) {
        format!("{}K", v >> 10)
    } else {
        v.to_string()
    }
}

impl ReserveMem {
    /// Parses `SIZE:ALIGN:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [size, align, name] = parts[..] else { return Err(format!("reserve_mem {s:?}: want SIZE:ALIGN:NAME")) };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("reserve_mem name {name:?}: use letters, digits, '_' or '-'"));
        }
        Ok(ReserveMem { size: parse_size(size)?, align: parse_size(align)?, name: name.to_string() })
    }
}

impl Memfd {
    /// Parses `SESSION:TOKEN:SIZE:POS`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [session, token, size, pos] = parts[..] else {
            return Err(format!("memfd {s:?}: want SESSION:TOKEN:SIZE:POS"));
        };
        let m = Memfd {
            session: session.parse().map_err(|_| format!("memfd {s:?}: bad session index"))?,
            token: token.parse().map_err(|_| format!("memfd {s:?}: bad token"))?,
            size: parse_size(size)?,
            pos: parse_size(pos)?,
        };
        Ok(m)
    }
}

impl Scenario {
    /// Checks what the guest would refuse.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=8).contains(&self.phases) {
            return Err(format!("{}: phases must be 2..=8, not {}", self.name, self.phases));
        }
        for (i, a) in self.memfds.iter().enumerate() {
            if self.memfds[..i].iter().any(|b| b.session == a.session && b.token == a.token) {
                return Err(format!("{}: token {} used twice in session {}", self.name, a.token, a.session));
            }
            if a.size > 256 << 20 {
                return Err(format!(
                    "{}: memfd of {} bytes does not fit the 1 GiB guest comfortably",
                    self.name, a.size
                ));
            }
        }
        let total: u64 =
            self.memfds.iter().map(|m| m.size).sum::<u64>() + self.reserve_mem.iter().map(|r| r.size).sum::<u64>();
        if total > 384 << 20 {
            return Err(format!("{}: {} MiB of test data is too much for a 1 GiB guest", self.name, total >> 20));
        }
        Ok(())
    }

    /// The kernel command line of the first kernel.
    pub fn cmdline(&self) -> String {
        // A producer run's kernel A has KHO off: `kho kexec` needs only
        // CONFIG_KEXEC. Its agent turns KHO on for kernel B.
        let kho = if self.producer { "" } else { " kho=on kho_scratch=16M,128M,32M" };
        let mut c = format!("console=ttyS0,115200 nokaslr panic=-1 oops=panic{kho} liveupdate=on retain_initrd");
        for r in &self.reserve_mem {
            c.push_str(&format!(" reserve_mem={}:{}:{}", size_text(r.size), size_text(r.align), r.name));
        }
        if let Some(m) = self.test_kho_max_mem {
            c.push_str(&format!(" test_kho.max_mem={m}"));
        }
        c.push_str(&format!(" kho_lab.phase=0 kho_lab.phases={}", self.phases));
        if self.producer {
            c.push_str(" kho_lab.producer=1");
        }
        if !self.memfds.is_empty() {
            let fds: Vec<String> =
                self.memfds.iter().map(|m| format!("{}:{}:{}:{}", m.session, m.token, m.size, m.pos)).collect();
            c.push_str(&format!(" kho_lab.fds={}", fds.join(",")));
        }
        c
    }

    /// The default set run by `kho-lab ci`.
    pub fn ci_set() -> Vec<Scenario> {
        let m = |session, token, size, pos| Memfd { session, token, size, pos };
        vec![
            Scenario {
                name: "plain".into(),
                phases: 2,
                test_kho_max_mem: Some(1 << 20),
                reserve_mem: vec![],
                memfds: vec![m(0, 1, 64 << 10, 4096)],
                producer: false,
            },
            Scenario {
                name: "odd".into(),
                phases: 2,
                test_kho_max_mem: Some(2 << 20),
                reserve_mem: vec![
                    ReserveMem { size: 4 << 20, align: 4096, name: "lab_a".into() },
                    ReserveMem { size: 2 << 20, align: 2 << 20, name: "lab_b".into() },
                ],
                memfds: vec![m(0, 1, 1, 1), m(0, 2, 12_345, 12_345), m(1, 7, 3 << 20, 5000)],
                producer: false,
            },
            Scenario::chain(),
            Scenario::producer(),
        ]
    }

    /// Kernel A runs `kho kexec`: self-test data, two sessions of memfds
    /// (a 1-byte file and one of 5 MiB among them), a reserve_mem region
    /// and kexec-metadata, all written by kho and loaded with
    /// `kexec_load`; kernel B restores them.
    pub fn producer() -> Scenario {
        let m = |session, token, size, pos| Memfd { session, token, size, pos };
        Scenario {
            name: "producer".into(),
            phases: 2,
            test_kho_max_mem: Some(4 << 20),
            reserve_mem: vec![ReserveMem { size: 4 << 20, align: 4096, name: "lab_p".into() }],
            memfds: vec![m(0, 1, 1, 0), m(0, 2, 5 << 20, 4096), m(1, 9, 12_345, 12_345)],
            producer: true,
        }
    }

    /// A→B→C with small test data.
    pub fn chain() -> Scenario {
        let m = |session, token, size, pos| Memfd { session, token, size, pos };
        Scenario {
            name: "chain".into(),
            phases: 3,
            test_kho_max_mem: Some(1 << 20),
            reserve_mem: vec![ReserveMem { size: 4 << 20, align: 4096, name: "lab_chain".into() }],
            memfds: vec![m(0, 1, 1, 0), m(0, 2, 12_345, 100), m(1, 3, 1 << 20, 4096)],
            producer: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("12345").unwrap(), 12345);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("3M").unwrap(), 3 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn parts_parse() {
        assert_eq!(
            ReserveMem::parse("4M:4096:lab").unwrap(),
            ReserveMem { size: 4 << 20, align: 4096, name: "lab".into() }
        );
        assert!(ReserveMem::parse("4M:lab").is_err());
        assert!(ReserveMem::parse("4M:4K:a b").is_err());
        assert_eq!(Memfd::parse("1:7:12345:100").unwrap(), Memfd { session: 1, token: 7, size: 12345, pos: 100 });
        assert!(Memfd::parse("1:7:12345").is_err());
    }

    #[test]
    fn cmdline_carries_the_scenario() {
        let s = Scenario::chain();
        let c = s.cmdline();
        assert!(c.contains(" reserve_mem=4M:4K:lab_chain"));
        assert!(c.contains(" test_kho.max_mem=1048576"));
        assert!(c.contains(" kho_lab.phase=0 kho_lab.phases=3 kho_lab.fds=0:1:1:0,0:2:12345:100,1:3:1048576:4096"));
        assert!(c.contains("kho=on") && c.contains("liveupdate=on") && c.contains("retain_initrd"));
        let p = Scenario::producer().cmdline();
        assert!(!p.contains("kho=on") && p.contains(" kho_lab.producer=1"), "{p}");
        for s in Scenario::ci_set() {
            s.validate().unwrap();
            assert!(s.cmdline().len() < 2048, "command line too long for x86");
        }
    }

    #[test]
    fn validation_refuses_what_the_guest_cannot_do() {
        let mut s = Scenario::chain();
        s.phases = 1;
        assert!(s.validate().is_err());
        let mut s = Scenario::chain();
        s.memfds.push(Memfd { session: 0, token: 1, size: 1, pos: 0 });
        assert!(s.validate().is_err());
        let mut s = Scenario::chain();
        s.memfds.push(Memfd { session: 2, token: 1, size: 300 << 20, pos: 0 });
        assert!(s.validate().is_err());
    }
}
