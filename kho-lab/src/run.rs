//! One scenario in QEMU: boot, let the agent work, dump RAM live and at
//! each `machine_kexec`, collect the truth.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gdb::Gdb;
use crate::parse::{self, SymbolMap};
use crate::qemu::{self, Event, Launch, Qemu};
use crate::scenario::Scenario;
use crate::truth::{Phase, TRUTH_VERSION, Truth};

/// What every run shares.
pub struct Lab {
    /// bzImage.
    pub kernel: PathBuf,
    /// Its symbols.
    pub symbols: SymbolMap,
    /// `machine_kexec`'s address.
    pub machine_kexec: u64,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Per-phase time limit.
    pub phase_timeout: Duration,
    /// KVM instead of TCG.
    pub kvm: bool,
}

/// The truth file's name in a run directory.
pub const TRUTH_FILE: &str = "truth.json";

/// Runs `sc` in `dir`. Ok: the chain completed and truth.json is written
/// (checks of what it holds come later). Err: one line saying what went
/// wrong, with the serial log's path.
pub fn run(lab: &Lab, sc: &Scenario, dir: &Path) -> Result<Truth, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let serial = dir.join("serial.log");
    let mut truth = Truth {
        truth_version: TRUTH_VERSION,
        scenario: sc.clone(),
        kernel: lab.kernel.display().to_string(),
        phases: vec![Phase::new(0)],
    };
    let result = drive(lab, sc, dir, &serial, &mut truth);
    let text = serde_json::to_string_pretty(&truth).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(TRUTH_FILE), text).map_err(|e| format!("{}: {e}", dir.join(TRUTH_FILE).display()))?;
    result.map(|()| truth).map_err(|why| format!("{}: {why} (serial log: {})", sc.name, serial.display()))
}

fn drive(lab: &Lab, sc: &Scenario, dir: &Path, serial: &Path, truth: &mut Truth) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let port = qemu::free_port().map_err(|e| format!("no free TCP port for the gdbstub: {e}"))?;
    let cmdline = sc.cmdline();
    let launch =
        Launch { kernel: &lab.kernel, initrd: &lab.initrd, cmdline: &cmdline, dir, gdb_port: port, kvm: lab.kvm };
    let mut q = Qemu::start(&launch, serial, tx.clone()).map_err(|e| e.to_string())?;
    let mut deadline = Instant::now() + lab.phase_timeout;
    let mut saw_kho_log = false;
    let started = Instant::now();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = match rx.recv_timeout(left) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                let p = truth.phases.last().map(|p| p.name.clone()).unwrap_or_default();
                return Err(format!("timeout: phase {p} made no progress for {} s", lab.phase_timeout.as_secs()));
            }
            Err(RecvTimeoutError::Disconnected) => return Err("internal: event channel closed".into()),
        };
        let phase = truth.phases.len() - 1;
        match ev {
            Event::Serial(line) => {
                if line.contains("Kernel panic") {
                    return Err(format!("guest panic in phase {}: {}", truth.phases[phase].name, line.trim()));
                }
                let Some(parsed) = parse::agent_line(&line) else {
                    saw_kho_log |= line.contains("KHO:");
                    continue;
                };
                let v = parsed.map_err(|e| format!("phase {}: {e}", truth.phases[phase].name))?;
                let cur = &mut truth.phases[phase];
                cur.absorb(&v, &lab.symbols).map_err(|e| format!("phase {}: bad agent line: {e}", cur.name))?;
                match v["t"].as_str().unwrap_or("") {
                    "boot" => {
                        if v["phase"].as_u64() != Some(u64::from(cur.index)) {
                            return Err(format!("expected phase {} to boot, the agent says {}", cur.index, v["phase"]));
                        }
                        eprintln!(
                            "kho-lab: {}: kernel {} booted ({:.0} s)",
                            sc.name,
                            cur.name,
                            started.elapsed().as_secs_f64()
                        );
                    }
                    "nokho" => {
                        let why = if saw_kho_log {
                            "KHO logged but no debugfs kho/"
                        } else {
                            "no KHO: lines, no debugfs kho/"
                        };
                        return Err(format!("kernel without CONFIG_KEXEC_HANDOVER (or kho=on ignored): {why}"));
                    }
                    "ready" => {
                        let name = cur.name.clone();
                        let file = format!("{name}-live.elf");
                        q.dump(&dir.join(&file)).map_err(|e| format!("live dump of {name}: {e}"))?;
                        truth.phases[phase].dumps.live = Some(file);
                        eprintln!(
                            "kho-lab: {}: dumped {name} live ({:.0} s)",
                            sc.name,
                            started.elapsed().as_secs_f64()
                        );
                        // The last kernel (a producer run's B) only waits
                        // for its dump: no kexec follows.
                        if phase + 1 < sc.phases as usize {
                            arm(lab, port, tx.clone())?;
                        }
                        q.send_line("go").map_err(|e| format!("cannot write to the guest console: {e}"))?;
                        deadline = Instant::now() + lab.phase_timeout;
                    }
                    "end" => {
                        let ok = v["ok"].as_bool() == Some(true);
                        if !ok || phase + 1 != sc.phases as usize {
                            let errs = truth.phases[phase].errors.join("; ");
                            return Err(format!(
                                "the agent in phase {} gave up: {}",
                                truth.phases[phase].name,
                                if errs.is_empty() { "a check failed" } else { &errs }
                            ));
                        }
                        return Ok(());
                    }
                    _ => {}
                }
            }
            Event::SerialClosed => {
                let status = q.exited().map(|s| s.to_string()).unwrap_or_else(|| "still running".into());
                let stderr = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
                let tail = stderr.lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "QEMU exited in phase {} ({status}){}",
                    truth.phases[phase].name,
                    if tail.is_empty() { String::new() } else { format!(": {tail}") }
                ));
            }
            Event::Stopped(stop) => {
                let name = truth.phases[phase].name.clone();
                let (mut gdb, _reason) = stop.map_err(|e| format!("waiting for machine_kexec in {name}: {e}"))?;
                let file = format!("{name}-kexec.elf");
                q.dump(&dir.join(&file)).map_err(|e| format!("kexec-point dump of {name}: {e}"))?;
                truth.phases[phase].dumps.kexec = Some(file);
                eprintln!(
                    "kho-lab: {}: dumped {name} at machine_kexec ({:.0} s)",
                    sc.name,
                    started.elapsed().as_secs_f64()
                );
                gdb.breakpoint(lab.machine_kexec, false).map_err(|e| format!("gdbstub: {e}"))?;
                gdb.detach().map_err(|e| format!("gdbstub: {e}"))?;
                truth.phases.push(Phase::new(phase as u32 + 1));
                deadline = Instant::now() + lab.phase_timeout;
            }
        }
    }
}

/// Stops the guest through the gdbstub, sets the breakpoint on
/// `machine_kexec`, resumes, and waits for the stop in a thread.
fn arm(lab: &Lab, port: u16, tx: mpsc::Sender<Event>) -> Result<(), String> {
    let mut gdb = Gdb::connect(port, Instant::now() + Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let gdb_err = |e: std::io::Error| format!("gdbstub: {e}");
    gdb.halt_reason().map_err(gdb_err)?;
    gdb.breakpoint(lab.machine_kexec, true).map_err(gdb_err)?;
    gdb.resume().map_err(gdb_err)?;
    let timeout = lab.phase_timeout;
    std::thread::spawn(move || {
        let stop = match gdb.wait_stop(timeout) {
            Ok(reason) => Ok((gdb, reason)),
            Err(e) => Err(e),
        };
        let _ = tx.send(Event::Stopped(stop));
    });
    Ok(())
}

/// Reads a truth file.
pub fn load_truth(path: &Path) -> Result<Truth, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if v["truth_version"].as_u64() != Some(u64::from(TRUTH_VERSION)) {
        return Err(format!(
            "{}: truth_version {} (this kho-lab reads {TRUTH_VERSION})",
            path.display(),
            v["truth_version"]
        ));
    }
    serde_json::from_value(v).map_err(|e| format!("{}: {e}", path.display()))
}
