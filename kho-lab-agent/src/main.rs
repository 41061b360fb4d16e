//! Guest agent of the kho lab.
//!
//! Runs as the init program's last step inside a real KHO-enabled kernel
//! under QEMU. It reads its scenario from the kernel command line, drives
//! the Live Update Orchestrator through `/dev/liveupdate`, verifies what the
//! previous kernel preserved, and reports everything it sees as one JSON
//! object per console line, each prefixed with `KHO-LAB `. The host side
//! (`kho-lab`) parses those lines into its truth file.
//!
//! Command-line parameters (ignored by the kernel, which keeps dotted
//! parameters for modules):
//! - `kho_lab.phase=N`: this kernel's index in the chain (0 = cold boot);
//! - `kho_lab.phases=K`: kernels in the chain; phase N hands over if N + 1 < K;
//! - `kho_lab.fds=S:TOKEN:SIZE:POS,...`: the memfds, each in session S
//!   (named `lab<phase>-s<S>`), with its LUO token, size and file position;
//! - `kho_lab.sessions=N`: sessions to create (default: one past the largest S);
//! - `kho_lab.producer=1`: the first kernel hands over with `kho kexec`
//!   (`kexec_load`) instead of LUO and `kexec_file_load`.

#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

mod out;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod produce;
mod scenario;

#[cfg(target_os = "linux")]
mod guest;
#[cfg(target_os = "linux")]
mod luo;

#[cfg(target_os = "linux")]
fn main() {
    guest::run();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("kho-lab-agent runs only inside a Linux guest");
    std::process::exit(1);
}
