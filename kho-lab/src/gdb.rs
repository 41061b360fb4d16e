//! The few GDB remote-protocol packets the lab needs, over TCP to QEMU's
//! gdbstub: stop, set and clear a hardware breakpoint, continue, wait for
//! the stop, detach.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to a gdbstub. Connecting stops the guest (QEMU's behaviour).
pub struct Gdb {
    stream: TcpStream,
    /// Bytes received but not yet consumed as packets.
    pending: Vec<u8>,
}

fn checksum(payload: &[u8]) -> u8 {
    payload.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Frames a packet: `$payload#cs`.
pub fn frame(payload: &str) -> String {
    format!("${payload}#{:02x}", checksum(payload.as_bytes()))
}

/// Extracts the first complete packet's payload from `buf`, returning it and
/// the bytes consumed; acknowledgements and noise before `$` are skipped.
pub fn unframe(buf: &[u8]) -> Result<Option<(String, usize)>, String> {
    let Some(start) = buf.iter().position(|&b| b == b'$') else { return Ok(None) };
    let Some(hash) = buf[start..].iter().position(|&b| b == b'#').map(|i| start + i) else { return Ok(None) };
    if buf.len() < hash + 3 {
        return Ok(None);
    }
    let payload = &buf[start + 1..hash];
    let cs = std::str::from_utf8(&buf[hash + 1..hash + 3]).ok().and_then(|s| u8::from_str_radix(s, 16).ok());
    if cs != Some(checksum(payload)) {
        return Err(format!("gdb packet with a bad checksum: {}", String::from_utf8_lossy(&buf[start..hash + 3])));
    }
    Ok(Some((String::from_utf8_lossy(payload).into_owned(), hash + 3)))
}

/// A console output packet: `O` followed by hex (not the reply `OK`).
fn is_console_output(reply: &str) -> bool {
    reply.len() > 1 && reply.starts_with('O') && reply[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Gdb {
    /// Connects to `127.0.0.1:port`, retrying until `deadline`.
    pub fn connect(port: u16, deadline: Instant) -> io::Result<Self> {
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Gdb { stream, pending: Vec::new() });
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("gdbstub on port {port}: {e}"))),
            }
        }
    }

    fn send(&mut self, payload: &str) -> io::Result<()> {
        self.stream.write_all(frame(payload).as_bytes())
    }

    /// Reads one packet (acknowledging it), waiting at most `timeout`.
    fn recv(&mut self, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((payload, used)) = unframe(&self.pending).map_err(io::Error::other)? {
                self.pending.drain(..used);
                self.stream.write_all(b"+")?;
                return Ok(payload);
            }
            if self.pending.len() > 1 << 20 {
                return Err(io::Error::other("gdbstub sent over 1 MiB without a complete packet"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer from the gdbstub"));
            }
            self.stream.set_read_timeout(Some(left.min(Duration::from_secs(1))))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gdbstub closed the connection")),
                Ok(k) => self.pending.extend_from_slice(&chunk[..k]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a command and returns its reply, skipping stop notifications
    /// (QEMU may report a stop again when a client attaches).
    fn command(&mut self, payload: &str, timeout: Duration) -> io::Result<String> {
        self.send(payload)?;
        loop {
            let reply = self.recv(timeout)?;
            let notification = reply.starts_with('T') || reply.starts_with('S') || is_console_output(&reply);
            if !notification || payload == "?" {
                return Ok(reply);
            }
        }
    }

    /// Asks why the guest is stopped (it is, after connecting).
    pub fn halt_reason(&mut self) -> io::Result<String> {
        self.command("?", Duration::from_secs(30))
    }

    /// Sets (`set`) or clears a hardware breakpoint at `addr`.
    pub fn breakpoint(&mut self, addr: u64, set: bool) -> io::Result<()> {
        let op = if set { 'Z' } else { 'z' };
        let reply = self.command(&format!("{op}1,{addr:x},1"), Duration::from_secs(30))?;
        if reply != "OK" {
            return Err(io::Error::other(format!("gdbstub refused {op}1 at {addr:#x}: {reply:?}")));
        }
        Ok(())
    }

    /// Resumes the guest (no reply until it stops again).
    pub fn resume(&mut self) -> io::Result<()> {
        self.send("c")
    }

    /// Waits for the stop reply after [`Gdb::resume`].
    pub fn wait_stop(&mut self, timeout: Duration) -> io::Result<String> {
        loop {
            let reply = self.recv(timeout)?;
            // Console output packets may precede the stop reply.
            if reply.starts_with('T') || reply.starts_with('S') {
                return Ok(reply);
            }
            if reply.starts_with('W') || reply.starts_with('X') {
                return Err(io::Error::other(format!("the guest ended instead of stopping: {reply}")));
            }
        }
    }

    /// Detaches; QEMU resumes the guest.
    pub fn detach(mut self) -> io::Result<()> {
        let reply = self.command("D", Duration::from_secs(30))?;
        if reply != "OK" {
            return Err(io::Error::other(format!("gdbstub refused to detach: {reply:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_frame_and_unframe() {
        assert_eq!(frame("?"), "$?#3f");
        assert_eq!(frame("Z1,ffffffff81239754,1"), "$Z1,ffffffff81239754,1#eb");
        let (p, used) = unframe(b"+$OK#9a+").unwrap().unwrap();
        assert_eq!((p.as_str(), used), ("OK", 7));
        assert_eq!(unframe(b"+$T05thread:01;#").unwrap(), None);
        assert!(unframe(b"$OK#00").is_err());
        assert_eq!(unframe(b"+").unwrap(), None);
        assert!(is_console_output("O6869"));
        assert!(!is_console_output("OK"));
    }
}
