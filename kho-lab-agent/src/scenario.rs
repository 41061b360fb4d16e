//! The scenario, as read from the kernel command line.

/// One memfd of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memfd {
    /// Session index.
    pub session: u32,
    /// LUO token, unique within its session.
    pub token: u64,
    /// Size in bytes.
    pub size: u64,
    /// File position set before preservation.
    pub pos: u64,
}

/// What the agent does in this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// This kernel's index in the chain.
    pub phase: u32,
    /// Kernels in the chain.
    pub phases: u32,
    /// Sessions to create per handing-over phase.
    pub sessions: u32,
    /// The memfds.
    pub memfds: Vec<Memfd>,
    /// The first kernel hands over with `kho kexec` (`kho_lab.producer=1`).
    pub producer: bool,
}

impl Scenario {
    /// Parses the `kho_lab.*` parameters of a kernel command line.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, String> {
        let mut phase = None;
        let mut phases = None;
        let mut sessions = None;
        let mut memfds = Vec::new();
        let mut producer = false;
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else { continue };
            match key {
                "kho_lab.phase" => phase = Some(parse_num(key, value)?),
                "kho_lab.phases" => phases = Some(parse_num(key, value)?),
                "kho_lab.sessions" => sessions = Some(parse_num(key, value)?),
                "kho_lab.producer" => producer = parse_num(key, value)? != 0,
                "kho_lab.fds" => {
                    for item in value.split(',').filter(|s| !s.is_empty()) {
                        memfds.push(parse_memfd(item)?);
                    }
                }
                _ => {}
            }
        }
        let phase = u32::try_from(phase.ok_or("kho_lab.phase missing")?).map_err(|_| "kho_lab.phase too large")?;
        let phases = u32::try_from(phases.unwrap_or(2)).map_err(|_| "kho_lab.phases too large")?;
        let implied = memfds.iter().map(|m| m.session + 1).max().unwrap_or(0);
        let sessions = match sessions {
            Some(n) => u32::try_from(n).map_err(|_| "kho_lab.sessions too large")?,
            None => implied,
        };
        if sessions < implied {
            return Err(format!("kho_lab.sessions={sessions} but a memfd names session {}", implied - 1));
        }
        for (i, a) in memfds.iter().enumerate() {
            if memfds[..i].iter().any(|b| b.session == a.session && b.token == a.token) {
                return Err(format!("token {} used twice in session {}", a.token, a.session));
            }
        }
        Ok(Scenario { phase, phases, sessions, memfds, producer })
    }

    /// Whether this kernel hands over to a next one.
    pub fn hands_over(&self) -> bool {
        self.phase + 1 < self.phases
    }
}

/// The name of session `index` created in `phase`.
pub fn session_name(phase: u32, index: u32) -> String {
    format!("lab{phase}-s{index}")
}

/// The command line for the next kernel: `own` with the phase advanced and
/// the options a KHO-booted kernel needs to log its reservations.
pub fn next_cmdline(own: &str, next_phase: u32) -> String {
    let mut words: Vec<String> = own
        .split_whitespace()
        .map(|w| if w.starts_with("kho_lab.phase=") { format!("kho_lab.phase={next_phase}") } else { w.to_string() })
        .collect();
    for needed in ["memblock=debug", "log_buf_len=16M"] {
        let key = needed.split('=').next().unwrap_or(needed);
        if !words.iter().any(|w| w.split('=').next() == Some(key)) {
            words.push(needed.to_string());
        }
    }
    words.join(" ")
}

fn parse_num(key: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| format!("{key}={value}: not a number"))
}

fn parse_memfd(item: &str) -> Result<Memfd, String> {
    let parts: Vec<&str> = item.split(':').collect();
    let [s, t, size, pos] = parts[..] else {
        return Err(format!("kho_lab.fds item {item:?}: want SESSION:TOKEN:SIZE:POS"));
    };
    let session = u32::try_from(parse_num("session", s)?).map_err(|_| format!("session {s} too large"))?;
    Ok(Memfd { session, token: parse_num("token", t)?, size: parse_num("size", size)?, pos: parse_num("pos", pos)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_lab_parameters() {
        let s = Scenario::from_cmdline(
            "console=ttyS0 kho=on kho_lab.phase=1 kho_lab.phases=3 kho_lab.fds=0:1:1:0,1:9:12345:100",
        )
        .unwrap();
        assert_eq!(s.phase, 1);
        assert_eq!(s.phases, 3);
        assert_eq!(s.sessions, 2);
        assert_eq!(s.memfds[1], Memfd { session: 1, token: 9, size: 12345, pos: 100 });
        assert!(s.hands_over());
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Scenario::from_cmdline("kho_lab.phases=2").is_err());
        assert!(Scenario::from_cmdline("kho_lab.phase=0 kho_lab.fds=0:1:2").is_err());
        assert!(Scenario::from_cmdline("kho_lab.phase=0 kho_lab.fds=0:1:2:0,0:1:3:0").is_err());
        assert!(Scenario::from_cmdline("kho_lab.phase=0 kho_lab.sessions=1 kho_lab.fds=1:1:2:0").is_err());
        assert!(Scenario::from_cmdline("kho_lab.phase=x").is_err());
    }

    #[test]
    fn next_cmdline_advances_the_phase_once() {
        let next = next_cmdline("console=ttyS0 kho_lab.phase=0 kho=on\n", 1);
        assert_eq!(next, "console=ttyS0 kho_lab.phase=1 kho=on memblock=debug log_buf_len=16M");
        assert_eq!(next_cmdline(&next, 2), "console=ttyS0 kho_lab.phase=2 kho=on memblock=debug log_buf_len=16M");
    }
}
