//! `/dev/liveupdate` ioctls (LUO's user-space interface).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const CREATE_SESSION: libc::c_ulong = 0xBA00;
const RETRIEVE_SESSION: libc::c_ulong = 0xBA01;
const PRESERVE_FD: libc::c_ulong = 0xBA40;
const RETRIEVE_FD: libc::c_ulong = 0xBA41;
const FINISH: libc::c_ulong = 0xBA42;

#[repr(C)]
struct SessionArg {
    size: u32,
    fd: i32,
    name: [u8; 64],
}

#[repr(C)]
struct FdArg {
    size: u32,
    fd: i32,
    token: u64,
}

#[repr(C)]
struct FinishArg {
    size: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<SessionArg>() == 72);
const _: () = assert!(size_of::<FdArg>() == 16);
const _: () = assert!(size_of::<FinishArg>() == 8);

fn ioctl<T>(fd: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed `#[repr(C)]` struct whose
    // layout is the one the request expects (sizes asserted above); the
    // kernel reads and writes at most `size_of::<T>()` bytes of it, as the
    // struct's own `size` member tells it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::other(format!("kernel returned fd {fd}")));
    }
    // SAFETY: the kernel just installed `fd` in this process for the caller
    // and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn session_arg(name: &str) -> io::Result<SessionArg> {
    let mut arg = SessionArg { size: size_of::<SessionArg>() as u32, fd: -1, name: [0; 64] };
    let bytes = name.as_bytes();
    if bytes.len() >= arg.name.len() {
        return Err(io::Error::other(format!("session name {name:?} longer than 63 bytes")));
    }
    arg.name[..bytes.len()].copy_from_slice(bytes);
    Ok(arg)
}

/// `CREATE_SESSION` on the device: a new session fd.
pub fn create_session(dev: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let mut arg = session_arg(name)?;
    ioctl(dev, CREATE_SESSION, &mut arg)?;
    owned(arg.fd)
}

/// `RETRIEVE_SESSION` on the device: the previous kernel's session.
pub fn retrieve_session(dev: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let mut arg = session_arg(name)?;
    ioctl(dev, RETRIEVE_SESSION, &mut arg)?;
    owned(arg.fd)
}

/// `PRESERVE_FD` on a session.
pub fn preserve_fd(session: &OwnedFd, file: &OwnedFd, token: u64) -> io::Result<()> {
    let mut arg = FdArg { size: size_of::<FdArg>() as u32, fd: file.as_raw_fd(), token };
    ioctl(session, PRESERVE_FD, &mut arg)
}

/// `RETRIEVE_FD` on a session: the restored file.
pub fn retrieve_fd(session: &OwnedFd, token: u64) -> io::Result<OwnedFd> {
    let mut arg = FdArg { size: size_of::<FdArg>() as u32, fd: -1, token };
    ioctl(session, RETRIEVE_FD, &mut arg)?;
    owned(arg.fd)
}

/// `FINISH` on a session.
pub fn finish(session: &OwnedFd) -> io::Result<()> {
    let mut arg = FinishArg { size: size_of::<FinishArg>() as u32, reserved: 0 };
    ioctl(session, FINISH, &mut arg)
}
