//! The agent's work inside the guest, phase by phase.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::luo;
use crate::out::Line;
use crate::scenario::{self, Scenario};
use kho_lab_agent::pattern;

const KHO_DEBUGFS: &str = "/sys/kernel/debug/kho";
const KCORE_TIMEOUT: Duration = Duration::from_secs(240);
const REPORT_CAP: usize = 256 * 1024;

/// A failed system call: the call and its error.
struct Failed {
    call: String,
    err: io::Error,
}

fn at(call: impl Into<String>) -> impl FnOnce(io::Error) -> Failed {
    let call = call.into();
    move |err| Failed { call, err }
}

fn report_error(call: &str, err: &io::Error) {
    Line::new("error")
        .str("call", call)
        .int("errno", i64::from(err.raw_os_error().unwrap_or(0)))
        .str("msg", &err.to_string())
        .emit();
}

/// Runs the agent; never returns (the agent is the init's last process).
pub fn run() -> ! {
    let ok = match phase() {
        Ok(ok) => ok,
        Err(f) => {
            report_error(&f.call, &f.err);
            false
        }
    };
    Line::new("end").bool("ok", ok).emit();
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // With QEMU's -no-reboot a restart ends the emulator; a tinyconfig
    // kernel may not be able to power the machine off.
    // SAFETY: reboot(2) with a documented command; it returns only on failure.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_RESTART) };
    report_error("reboot(RESTART)", &io::Error::last_os_error());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// One kernel's work. Ok(false): a check failed (reported); Err: a call failed.
fn phase() -> Result<bool, Failed> {
    let cmdline = fs::read_to_string("/proc/cmdline").map_err(at("read /proc/cmdline"))?;
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let scenario = match Scenario::from_cmdline(&cmdline) {
        Ok(s) => s,
        Err(e) => {
            Line::new("error").str("call", "parse /proc/cmdline").int("errno", 0).str("msg", &e).emit();
            return Ok(false);
        }
    };
    Line::new("boot")
        .num("phase", u64::from(scenario.phase))
        .num("phases", u64::from(scenario.phases))
        .str("release", release.trim())
        .str("cmdline", cmdline.trim())
        .emit();
    report_setup_data();
    report_dmesg();
    let kho_present = Path::new(KHO_DEBUGFS).is_dir();
    // A producer run's kernel A needs no KHO of its own.
    if scenario.producer && scenario.phase == 0 {
        Line::new("producer").bool("kho_debugfs", kho_present).emit();
        return producer_phase(&scenario, &cmdline, true);
    }
    if !kho_present {
        Line::new("nokho").str("path", KHO_DEBUGFS).emit();
    }
    report_debugfs(Path::new(KHO_DEBUGFS), "boot");
    // Keep the console for report lines from here on; dmesg is read from /dev/kmsg.
    let _ = fs::write("/proc/sys/kernel/printk", "4");
    if !kho_present {
        return Ok(false);
    }

    let dev = OpenOptions::new().read(true).write(true).open("/dev/liveupdate").map_err(at("open /dev/liveupdate"))?;
    let dev = OwnedFd::from(dev);
    let mut ok = true;
    if scenario.phase > 0 {
        ok &= restore(&dev, &scenario);
    }
    if scenario.producer {
        return producer_phase(&scenario, &cmdline, ok);
    }
    if !scenario.hands_over() {
        return Ok(ok);
    }
    // Everything preserved below stays open until the kexec.
    let held = preserve(&dev, &scenario)?;
    report_debugfs(&Path::new(KHO_DEBUGFS).join("out"), "ready");
    Line::new("ready").num("phase", u64::from(scenario.phase)).bool("ok", ok).emit();
    wait_for_host()?;
    run_kcore();
    kexec(&cmdline, scenario.phase + 1)?;
    drop(held);
    Ok(false)
}

/// A phase of the producer scenario: the first kernel loads the next one
/// with `kho kexec`; the last one waits for the host to dump its memory
/// (where the host checks the `reserve_mem` bytes) before it ends.
fn producer_phase(s: &Scenario, cmdline: &str, ok: bool) -> Result<bool, Failed> {
    if !s.hands_over() {
        Line::new("ready").num("phase", u64::from(s.phase)).bool("ok", ok).emit();
        wait_for_host()?;
        return Ok(ok);
    }
    let mut next = scenario::next_cmdline(cmdline, s.phase + 1);
    if !next.split_whitespace().any(|w| w == "kho=on") {
        next.push_str(" kho=on");
    }
    let refused = crate::produce::try_unsafe_plan(s, cmdline, &next);
    let denied = crate::produce::try_without_permission(s, cmdline, &next);
    Line::new("ready").num("phase", u64::from(s.phase)).bool("ok", refused && denied).emit();
    wait_for_host()?;
    if let Err(why) = crate::produce::load(s, cmdline, &next) {
        Line::new("error").str("call", "kho kexec").int("errno", 0).str("msg", &why).emit();
        return Ok(false);
    }
    Line::new("kexec").str("cmdline", &next).emit();
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) into the kernel `kho kexec` loaded; returns only on failure.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    Err(Failed { call: "reboot(KEXEC)".into(), err: io::Error::last_os_error() })
}

fn report_setup_data() {
    let dir = Path::new("/sys/kernel/boot_params/setup_data");
    let Ok(entries) = sorted_entries(dir) else { return };
    for name in entries {
        let base = dir.join(&name);
        let kind = fs::read_to_string(base.join("type")).unwrap_or_default();
        match fs::read(base.join("data")) {
            Ok(data) => Line::new("setup_data").str("index", &name).str("type", kind.trim()).hex("data", &data).emit(),
            Err(e) => report_error(&format!("read {}", base.join("data").display()), &e),
        }
    }
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> =
        fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

/// Whether a kernel log message is part of the handover's story.
fn interesting(msg: &str) -> bool {
    // Every memblock reservation: without kallsyms the caller is a bare
    // address, which the host resolves with System.map.
    msg.contains("memblock_reserve")
        || ["KHO", "luo", "test_kho", "Revived memory reservation", "reserve_mem", "liveupdate", "Kernel panic"]
            .iter()
            .any(|k| msg.contains(k))
}

fn report_dmesg() {
    let kmsg = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg");
    let mut kmsg = match kmsg {
        Ok(f) => f,
        Err(e) => return report_error("open /dev/kmsg", &e),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let (mut total, mut lost) = (0u64, 0u64);
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += 1;
                let rec = String::from_utf8_lossy(&buf[..n]);
                // "prio,seq,usec,flags;message\n" then optional " KEY=value" lines.
                let Some((head, rest)) = rec.split_once(';') else { continue };
                let msg = rest.lines().next().unwrap_or("");
                if interesting(msg) {
                    let seq = head.split(',').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    Line::new("dmesg").num("seq", seq).str("msg", msg).emit();
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => lost += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return report_error("read /dev/kmsg", &e),
        }
    }
    Line::new("dmesg_done").num("records", total).num("overwritten", lost).emit();
}

fn report_debugfs(dir: &Path, when: &str) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let names = match sorted_entries(&d) {
            Ok(n) => n,
            Err(e) => return report_error(&format!("readdir {}", d.display()), &e),
        };
        for name in names.into_iter().rev() {
            let p = d.join(&name);
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(KHO_DEBUGFS).unwrap_or(&p).display().to_string();
            match fs::read(&p) {
                Ok(data) => Line::new("debugfs").str("when", when).str("path", &rel).hex("data", &data).emit(),
                Err(e) => report_error(&format!("read {}", p.display()), &e),
            }
        }
    }
}

/// Retrieves and verifies the previous phase's sessions, then finishes them.
fn restore(dev: &OwnedFd, s: &Scenario) -> bool {
    let prev = s.phase - 1;
    let mut all_ok = true;
    for index in 0..s.sessions {
        let name = scenario::session_name(prev, index);
        let session = match luo::retrieve_session(dev, &name) {
            Ok(fd) => fd,
            Err(e) => {
                report_error(&format!("RETRIEVE_SESSION {name}"), &e);
                all_ok = false;
                continue;
            }
        };
        for m in s.memfds.iter().filter(|m| m.session == index) {
            all_ok &= verify_memfd(&session, &name, m, prev);
        }
        match luo::finish(&session) {
            Ok(()) => Line::new("finish").str("session", &name).bool("ok", true).emit(),
            Err(e) => {
                report_error(&format!("FINISH {name}"), &e);
                all_ok = false;
            }
        }
    }
    Line::new("restore_verdict").num("phase", u64::from(s.phase)).bool("ok", all_ok).emit();
    all_ok
}

fn verify_memfd(session: &OwnedFd, name: &str, m: &scenario::Memfd, prev_phase: u32) -> bool {
    let fail = |why: String| {
        Line::new("restore").str("session", name).num("token", m.token).bool("ok", false).str("why", &why).emit();
        false
    };
    let fd = match luo::retrieve_fd(session, m.token) {
        Ok(fd) => fd,
        Err(e) => return fail(format!("RETRIEVE_FD: errno {} ({e})", e.raw_os_error().unwrap_or(0))),
    };
    let mut file = File::from(fd);
    let size = match file.metadata() {
        Ok(md) => md.len(),
        Err(e) => return fail(format!("fstat: {e}")),
    };
    let pos = match file.stream_position() {
        Ok(p) => p,
        Err(e) => return fail(format!("lseek: {e}")),
    };
    if size != m.size {
        return fail(format!("size {size}, expected {}", m.size));
    }
    if pos != m.pos {
        return fail(format!("position {pos}, expected {}", m.pos));
    }
    let seed = pattern::seed(name, m.token, prev_phase);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let want = usize::try_from((size - off).min(buf.len() as u64)).unwrap_or(buf.len());
        if let Err(e) = file.read_exact_at(&mut buf[..want], off) {
            return fail(format!("pread at {off}: {e}"));
        }
        if let Some(bad) = pattern::first_mismatch(seed, off, &buf[..want]) {
            return fail(format!("byte {bad} differs from the pattern"));
        }
        off += want as u64;
    }
    Line::new("restore")
        .str("session", name)
        .num("token", m.token)
        .bool("ok", true)
        .num("size", size)
        .num("pos", pos)
        .emit();
    true
}

/// Creates this phase's sessions and memfds, preserves them and returns every fd to hold.
fn preserve(dev: &OwnedFd, s: &Scenario) -> Result<Vec<OwnedFd>, Failed> {
    let mut held = Vec::new();
    for index in 0..s.sessions {
        let name = scenario::session_name(s.phase, index);
        let session = luo::create_session(dev, &name).map_err(at(format!("CREATE_SESSION {name}")))?;
        Line::new("session").str("name", &name).emit();
        for m in s.memfds.iter().filter(|m| m.session == index) {
            let file = make_memfd(&name, m, s.phase)?;
            let pfns = page_frames(&file, m.size).map_err(at(format!("pagemap of {name}/{}", m.token)))?;
            let fd = OwnedFd::from(file);
            luo::preserve_fd(&session, &fd, m.token).map_err(at(format!("PRESERVE_FD {name}/{}", m.token)))?;
            Line::new("memfd")
                .str("session", &name)
                .num("token", m.token)
                .num("size", m.size)
                .num("pos", m.pos)
                .runs("pfns", &pfns)
                .emit();
            held.push(fd);
        }
        held.push(session);
    }
    Ok(held)
}

fn make_memfd(session: &str, m: &scenario::Memfd, phase: u32) -> Result<File, Failed> {
    let label = CString::new(format!("{session}-{}", m.token))
        .map_err(|e| Failed { call: "memfd name".into(), err: io::Error::other(e) })?;
    // SAFETY: `label` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(label.as_ptr(), 0) };
    if fd < 0 {
        return Err(Failed { call: "memfd_create".into(), err: io::Error::last_os_error() });
    }
    // SAFETY: memfd_create just returned this fd to us and nothing else owns it.
    let mut file = File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    let seed = pattern::seed(session, m.token, phase);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < m.size {
        let n = usize::try_from((m.size - off).min(buf.len() as u64)).unwrap_or(buf.len());
        pattern::fill(seed, off, &mut buf[..n]);
        file.write_all(&buf[..n]).map_err(at(format!("write memfd {session}/{}", m.token)))?;
        off += n as u64;
    }
    file.seek(SeekFrom::Start(m.pos)).map_err(at(format!("lseek memfd {session}/{}", m.token)))?;
    Ok(file)
}

/// The page frames backing a memfd, as runs of consecutive PFNs, read from
/// `/proc/self/pagemap` through a temporary shared mapping.
fn page_frames(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    const PAGE: u64 = 4096;
    if size == 0 {
        return Ok(Vec::new());
    }
    let len = usize::try_from(size.div_ceil(PAGE) * PAGE).map_err(io::Error::other)?;
    // SAFETY: a fresh shared read-only mapping of a file we own; no Rust
    // reference aliases it and it is unmapped below before returning.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let pages = len / PAGE as usize;
    for i in 0..pages {
        // SAFETY: `i * PAGE` lies inside the `len`-byte mapping just made;
        // a volatile read faults the page in.
        unsafe { std::ptr::read_volatile((map as *const u8).add(i * PAGE as usize)) };
    }
    let result = (|| {
        let pagemap = File::open("/proc/self/pagemap")?;
        let mut entries = vec![0u8; pages * 8];
        pagemap.read_exact_at(&mut entries, (map as u64 / PAGE) * 8)?;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for chunk in entries.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let e = u64::from_le_bytes(word);
            if e >> 63 == 0 {
                return Err(io::Error::other("memfd page not present"));
            }
            let pfn = e & ((1 << 55) - 1);
            match runs.last_mut() {
                Some((start, count)) if *start + *count == pfn => *count += 1,
                _ => runs.push((pfn, 1)),
            }
        }
        Ok(runs)
    })();
    // SAFETY: unmaps exactly the mapping made above, which nothing uses any more.
    unsafe { libc::munmap(map, len) };
    result
}

fn wait_for_host() -> Result<(), Failed> {
    let mut line = String::new();
    io::stdin().read_line(&mut line).map_err(at("read the host's go line"))?;
    Line::new("go").str("line", line.trim()).emit();
    Ok(())
}

/// Runs the static `kho` inspector on the running kernel and reports what it said.
fn run_kcore() {
    let child = std::process::Command::new("/kho")
        .args(["inspect", "/proc/kcore", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return report_error("spawn /kho", &e),
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(KCORE_TIMEOUT) {
        Ok(Ok(out)) => {
            let cap = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(REPORT_CAP)]).into_owned();
            Line::new("kcore")
                .int("exit", i64::from(out.status.code().unwrap_or(-1)))
                .str("stdout", &cap(&out.stdout))
                .str("stderr", &cap(&out.stderr))
                .emit();
        }
        Ok(Err(e)) => report_error("wait /kho", &e),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) on our own child, which has not been reaped
                // (the waiting thread is still blocked on it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            Line::new("kcore").int("exit", -1).str("stdout", "").str("stderr", "timed out").emit();
        }
    }
}

fn kexec(own_cmdline: &str, next_phase: u32) -> Result<(), Failed> {
    let kernel = File::open("/bzImage").map_err(at("open /bzImage"))?;
    let initrd = File::open("/sys/firmware/initrd").map_err(at("open /sys/firmware/initrd"))?;
    let next = scenario::next_cmdline(own_cmdline, next_phase);
    let c = CString::new(next.clone()).map_err(|e| Failed { call: "next cmdline".into(), err: io::Error::other(e) })?;
    let len = c.as_bytes_with_nul().len();
    // SAFETY: kexec_file_load(2) with two open fds, the length of `c`
    // including its NUL, `c` itself (alive across the call) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_raw_fd(),
            len,
            c.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(Failed { call: "kexec_file_load".into(), err: io::Error::last_os_error() });
    }
    Line::new("kexec").str("cmdline", &next).emit();
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) into the loaded kernel; returns only on failure.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    Err(Failed { call: "reboot(KEXEC)".into(), err: io::Error::last_os_error() })
}
