//! The handover demo end to end, as a newcomer runs it: one process, then
//! `--save` in one process and `--load` in another.

use std::path::PathBuf;
use std::process::Command;

/// The example binary `cargo test` built beside this test.
fn demo() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target profile directory");
    dir.join("examples").join(format!("handover{}", std::env::consts::EXE_SUFFIX))
}

fn run(args: &[&str]) -> String {
    let bin = demo();
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds the examples before the tests (a filter such as `--test demo` alone does not)",
        bin.display()
    );
    let out = Command::new(bin).args(["--ram-mib", "128", "--folios", "40"]).args(args).output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "demo {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn demo_runs_in_one_process() {
    let out = run(&["--seed", "3"]);
    assert!(out.contains("restored the folio array"), "{out}");
    assert!(out.contains("the session table"), "{out}");
    assert!(out.contains("0 blocks left unclaimed"), "{out}");
    assert!(out.trim_end().ends_with("handover OK"), "{out}");
}

#[test]
fn demo_hands_over_between_processes() {
    let dir = std::env::temp_dir().join(format!("kho-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("machine.img");
    let image = image.to_str().unwrap();
    let saved = run(&["--seed", "5", "--save", image]);
    assert!(saved.contains("saved the machine"), "{saved}");
    let loaded = run(&["--load", image]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(loaded.contains("40 folios"), "{loaded}");
    assert!(loaded.trim_end().ends_with("handover OK"), "{loaded}");
}
