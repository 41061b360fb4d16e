//! The C side, from `cargo test`: the header compiles as C11 and C++17 with
//! warnings as errors, and the C tests and the C example, built against the
//! static archive of this very build under ASan and UBSan, pass.
//!
//! `.ci/c-tests` does the same against the release archives, hosted and
//! freestanding, and checks the freestanding archive's undefined symbols.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The hosted archive of this build's profile, built once by a nested
/// `cargo build` (`cargo test` builds the library as an rlib only).
fn archive() -> PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // <target>/<profile>/deps/c-<hash>
            let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
            let target_dir = profile_dir.parent().expect("target");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "--lib", "-p", "kho-ffi", "--manifest-path"]);
            cmd.arg(repo().join("Cargo.toml")).arg("--target-dir").arg(target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            run(&mut cmd);
            let a = profile_dir.join("libkho_ffi.a");
            assert!(a.exists(), "{} was not built", a.display());
            a
        })
        .clone()
}

fn compiler(var: &str, default: &str) -> String {
    let cc = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let found = Command::new(&cc).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "no C compiler: `{cc} --version` failed; install one (gcc or clang) or set {var}");
    cc
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

const WARN: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic"];
const SAN: &[&str] = &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];

/// Compiles `sources` with the example's arena against the archive, under
/// the sanitizers, and runs the program.
fn build_and_run(name: &str, sources: &[&str]) -> String {
    let repo = repo();
    let out = std::env::temp_dir().join(format!("kho-ffi-{name}-{}", std::process::id()));
    let mut cmd = Command::new(compiler("CC", "cc"));
    cmd.arg("-std=c11").args(WARN).args(SAN);
    cmd.arg("-I").arg(repo.join("include")).arg("-I").arg(repo.join("examples/c"));
    for s in sources {
        cmd.arg(repo.join(s));
    }
    cmd.arg(archive()).args(["-lpthread", "-ldl", "-lm"]).arg("-o").arg(&out);
    run(&mut cmd);
    let text = run(Command::new(&out).env("ASAN_OPTIONS", "detect_leaks=1"));
    let _ = std::fs::remove_file(&out);
    text
}

#[test]
fn header_compiles_as_c11_and_cxx17() {
    let repo = repo();
    let header = repo.join("include/kho.h");
    for (var, default, lang, std) in [("CC", "cc", "c", "-std=c11"), ("CXX", "c++", "c++", "-std=c++17")] {
        let mut cmd = Command::new(compiler(var, default));
        cmd.args(["-x", lang, std, "-fsyntax-only"]).args(WARN).arg(&header);
        run(&mut cmd);
    }
}

#[test]
fn c_layout_test() {
    let out = build_and_run("layout", &["kho-ffi/tests/c/layout.c"]);
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn c_bad_input_test() {
    let out = build_and_run("bad-input", &["kho-ffi/tests/c/bad_input.c", "examples/c/arena.c"]);
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn c_errors_test() {
    let out = build_and_run("errors", &["kho-ffi/tests/c/errors.c", "examples/c/arena.c"]);
    assert!(out.contains(" 0 failed"), "{out}");
    // The typed reason of a corrupt handover reaches C: kind, node, slot.
    assert!(out.contains("kind=tree_node_misaligned"), "{out}");
    assert!(out.contains("kind=bad_compatible"), "{out}");
}

#[test]
fn c_handover_example() {
    let out = build_and_run("handover", &["examples/c/handover.c", "examples/c/arena.c"]);
    assert!(out.contains("handover OK"), "{out}");
}

#[test]
fn c_luo_memfd_test() {
    let out = build_and_run("luo", &["kho-ffi/tests/c/luo.c", "examples/c/arena.c"]);
    assert!(out.contains("luo OK"), "{out}");
    // Each bad input reached C with its layer's kind and place.
    assert!(out.contains("luo_files_not_ram at session[0].files.head"), "{out}");
    assert!(out.contains("memfd_folio_not_preserved at folio[1].pfn"), "{out}");
}

#[test]
fn c_producer_test() {
    let out = build_and_run("producer", &["kho-ffi/tests/c/producer.c", "examples/c/arena.c"]);
    assert!(out.contains("loader pieces: ok"), "{out}");
    assert!(out.contains("writers read back: ok"), "{out}");
    assert!(out.contains("producer: all passed"), "{out}");
}
