//! Progress on stderr for the slow phases (the FDT scan, walks over many
//! blocks): a line redrawn in place on a terminal, or plain lines with
//! `--progress` when stderr is not one. Quiet otherwise, and quiet on a
//! terminal for phases that end within half a second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    /// Redrawn in place on a terminal.
    Terminal,
    /// One line per second and one at the end (`--progress` without a
    /// terminal, e.g. into a log).
    Lines,
}

/// Where progress goes, decided once per run.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    mode: Mode,
}

/// Quiet time before a phase shows anything on a terminal.
const DELAY: Duration = Duration::from_millis(500);

impl Progress {
    /// Progress on stderr if it is a terminal or `forced` (`--progress`).
    pub fn new(forced: bool) -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else if forced {
            Mode::Lines
        } else {
            Mode::Off
        };
        Progress { mode }
    }

    /// No progress at all.
    pub fn off() -> Progress {
        Progress { mode: Mode::Off }
    }

    /// Starts reporting a phase: `counter` counts `unit`s done, out of
    /// `total` if known. Reporting stops when the returned value drops.
    pub fn phase(&self, label: &'static str, unit: &'static str, counter: Arc<AtomicU64>, total: Option<u64>) -> Phase {
        let start = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let shown = Arc::new(AtomicBool::new(false));
        let thread = (self.mode != Mode::Off).then(|| {
            let (mode, done, shown, counter) = (self.mode, done.clone(), shown.clone(), counter.clone());
            std::thread::spawn(move || {
                let every = if mode == Mode::Terminal { Duration::from_millis(200) } else { Duration::from_secs(1) };
                let mut next = start + if mode == Mode::Terminal { DELAY } else { every };
                while !done.load(Ordering::Acquire) {
                    std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
                    if done.load(Ordering::Acquire) || Instant::now() < next {
                        continue;
                    }
                    let line = status(label, unit, counter.load(Ordering::Relaxed), total, start.elapsed());
                    let mut err = std::io::stderr().lock();
                    let _ =
                        if mode == Mode::Terminal { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
                    let _ = err.flush();
                    shown.store(true, Ordering::Release);
                    next += every;
                }
            })
        });
        Phase { mode: self.mode, label, unit, counter, start, done, shown, thread }
    }
}

fn status(label: &str, unit: &str, n: u64, total: Option<u64>, t: Duration) -> String {
    match total {
        Some(total) if total > 0 => {
            format!(
                "{label}: {n} of {total} {unit} ({:.0}%), {:.1} s",
                n as f64 * 100.0 / total as f64,
                t.as_secs_f64()
            )
        }
        _ => format!("{label}: {n} {unit}, {:.1} s", t.as_secs_f64()),
    }
}

/// A phase being reported; ends its report when dropped.
#[derive(Debug)]
pub struct Phase {
    mode: Mode,
    label: &'static str,
    unit: &'static str,
    counter: Arc<AtomicU64>,
    start: Instant,
    done: Arc<AtomicBool>,
    shown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let shown = self.shown.load(Ordering::Acquire);
        if self.mode == Mode::Lines || shown {
            let n = self.counter.load(Ordering::Relaxed);
            let clear = if self.mode == Mode::Terminal { "\r\x1b[K" } else { "" };
            let t = self.start.elapsed().as_secs_f64();
            eprintln!("{clear}{}: done, {n} {} in {t:.2} s", self.label, self.unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status("scan", "MiB", 5, Some(20), Duration::from_millis(1500)), "scan: 5 of 20 MiB (25%), 1.5 s");
        assert_eq!(status("walk", "blocks", 7, None, Duration::from_secs(2)), "walk: 7 blocks, 2.0 s");
    }

    #[test]
    fn off_reports_nothing_and_stops() {
        let c = Arc::new(AtomicU64::new(0));
        let p = Progress::off().phase("x", "y", c.clone(), None);
        c.fetch_add(3, Ordering::Relaxed);
        assert!(p.thread.is_none());
        drop(p);
    }
}
