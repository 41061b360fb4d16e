//! The QEMU process: started with the serial console on pipes, a QMP
//! socket and a gdbstub; killed whenever its owner goes away.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Something the run loop waits for.
pub enum Event {
    /// A console line (without its line ending).
    Serial(String),
    /// The console closed: QEMU exited.
    SerialClosed,
    /// The gdbstub reported a stop (or failed while waiting for one).
    Stopped(io::Result<(crate::gdb::Gdb, String)>),
}

/// How to start QEMU.
pub struct Launch<'a> {
    /// bzImage.
    pub kernel: &'a Path,
    /// initramfs.
    pub initrd: &'a Path,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Directory for the sockets and logs.
    pub dir: &'a Path,
    /// gdbstub port on 127.0.0.1.
    pub gdb_port: u16,
    /// Use KVM instead of TCG.
    pub kvm: bool,
}

/// A running QEMU. Dropping it kills the process.
pub struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
}

/// The QEMU binary name.
pub const QEMU: &str = "qemu-system-x86_64";

impl Qemu {
    /// Starts QEMU; console lines go to `events` and, raw, to `serial_log`.
    pub fn start(l: &Launch<'_>, serial_log: &Path, events: Sender<Event>) -> io::Result<Qemu> {
        let qmp_path = l.dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let stderr = File::create(l.dir.join("qemu.stderr"))?;
        let accel = if l.kvm { "kvm" } else { "tcg,thread=multi" };
        let mut cmd = Command::new(QEMU);
        cmd.args(["-accel", accel, "-m", "1G", "-smp", "2", "-display", "none", "-no-reboot", "-monitor", "none"])
            .arg("-kernel")
            .arg(l.kernel)
            .arg("-initrd")
            .arg(l.initrd)
            .args(["-append", l.cmdline, "-serial", "stdio"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .args(["-gdb", &format!("tcp:127.0.0.1:{}", l.gdb_port)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if l.kvm {
            cmd.args(["-cpu", "host"]);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(e.kind(), format!("{QEMU} not found: install qemu-system-x86"))
            } else {
                io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}"))
            }
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("QEMU stdout not captured"))?;
        let mut log = File::create(serial_log)?;
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = log.write_all(&line);
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']).to_string();
                        if events.send(Event::Serial(text)).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = log.flush();
            let _ = events.send(Event::SerialClosed);
        });
        Ok(Qemu { child, stdin, qmp_path, qmp: None })
    }

    /// Writes a line to the guest's console.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::other("QEMU stdin closed"))?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()
    }

    /// Dumps guest RAM to `path` (ELF, physical addresses); returns when written.
    pub fn dump(&mut self, path: &Path) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        if self.qmp.is_none() {
            self.qmp = Some(Qmp::connect(&self.qmp_path)?);
        }
        let qmp = self.qmp.as_mut().ok_or_else(|| io::Error::other("no QMP connection"))?;
        let abs = std::path::absolute(path)?;
        qmp.execute(
            "dump-guest-memory",
            json!({"paging": false, "protocol": format!("file:{}", abs.display()), "format": "elf"}),
            Duration::from_secs(600),
        )?;
        Ok(())
    }

    /// Whether QEMU has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.qmp_path);
    }
}

/// A QMP connection in command mode.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> io::Result<Qmp> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(io::Error::new(e.kind(), format!("QMP socket {}: {e}", path.display()))),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(io::Error::other(format!("unexpected QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}), Duration::from_secs(30))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        // A QMP message is one line; bound it so a broken peer cannot grow it forever.
        let n = (&mut self.reader).take(16 << 20).read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QMP connection closed"));
        }
        serde_json::from_str(&line).map_err(|e| io::Error::other(format!("bad QMP message ({e}): {line}")))
    }

    fn execute(&mut self, command: &str, arguments: Value, timeout: Duration) -> io::Result<Value> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let msg = json!({"execute": command, "arguments": arguments});
        self.writer.write_all(format!("{msg}\n").as_bytes())?;
        loop {
            let reply = self.read_message()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(io::Error::other(format!("QMP {command}: {err}")));
            }
            // An asynchronous event (STOP, RESUME, DUMP_COMPLETED): skip it.
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU takes it next).
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
