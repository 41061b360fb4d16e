//! Replays the fuzz corpora of the payload-layer harnesses in
//! `kho_fuzzing::layers` (`luo_restore`, `memfd_restore`,
//! `memblock_restore`, `kexec_meta_restore`, `selftest_restore`) through
//! the same code the fuzz targets run, and checks what the seeds do.
//!
//! Every seed must be checked in under `fuzz/corpus/<target>/` (set
//! `KHO_WRITE_SEEDS=1` to write them), and every file there is run through
//! the harness; a missing or empty corpus directory fails.

use std::path::PathBuf;

use kho_fuzzing::Machines;
use kho_fuzzing::layers::{kexec_meta, luo, memblock, memfd, selftest};

/// The corpus directory of `target`.
fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Checks that every seed is in the corpus (writing them first when
/// `KHO_WRITE_SEEDS` is set), then replays the whole corpus through `run`,
/// as the fuzz target does (one pool of machines for every input, so each
/// input gets a machine reset after the one before) and again with a new
/// machine per input: the results must agree. Returns the number of files
/// replayed.
fn replay(target: &str, seeds: &[Vec<u8>], run: impl Fn(&mut Machines, &[u8]) -> bool) -> usize {
    let dir = dir(target);
    if std::env::var_os("KHO_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).expect("seed file");
        }
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        files.push(std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"));
    }
    for s in seeds {
        assert!(files.contains(s), "seed {s:?} is not in {}", dir.display());
    }
    let mut shared = Machines::new();
    for f in &files {
        let reused = run(&mut shared, f);
        assert_eq!(reused, run(&mut Machines::new(), f), "{target}: a reused machine changes the result of {f:?}");
    }
    assert_eq!(shared.kept(), 1, "{target}: the machine went back to the pool");
    assert!(files.len() >= seeds.len().max(1), "{} holds {} files", dir.display(), files.len());
    files.len()
}

#[test]
fn luo_seeds_do_what_they_say() {
    let mut ms = Machines::new();
    for shape in 0..64u8 {
        assert!(luo::run(&mut ms, &[shape]), "shape {shape:#x} does not restore");
    }
    for seed in luo::seeds().iter().skip(64) {
        assert!(!luo::run(&mut ms, seed), "corrupted seed {seed:?} restores");
    }
}

#[test]
fn luo_corpus_replays() {
    replay("luo_restore", &luo::seeds(), luo::run);
}

#[test]
fn memfd_seeds_do_what_they_say() {
    let mut ms = Machines::new();
    for shape in [0u8, 1, 3, 51, 60, 0x41, 0x55, 0x81, 0xc4, 0xff] {
        assert!(memfd::run(&mut ms, &[shape]), "shape {shape:#x} does not restore");
    }
    let seeds = memfd::seeds();
    for s in &seeds[..12] {
        assert!(memfd::run(&mut ms, s), "shape {s:?} does not restore");
    }
    for s in &seeds[12..] {
        assert!(!memfd::run(&mut ms, s), "corrupted seed {s:?} restores");
    }
}

#[test]
fn memfd_corpus_replays() {
    replay("memfd_restore", &memfd::seeds(), memfd::run);
}

#[test]
fn memblock_seeds_do_what_they_say() {
    let mut ms = Machines::new();
    let seeds = memblock::seeds();
    for s in &seeds[..6] {
        assert!(memblock::run(&mut ms, s), "shape {s:?} does not restore");
    }
    for s in &seeds[6..] {
        assert!(!memblock::run(&mut ms, s), "corrupted seed {s:?} restores");
    }
}

#[test]
fn memblock_corpus_replays() {
    replay("memblock_restore", &memblock::seeds(), memblock::run);
}

#[test]
fn kexec_meta_seeds_do_what_they_say() {
    let mut ms = Machines::new();
    let got: Vec<bool> = kexec_meta::seeds().iter().map(|s| kexec_meta::run(&mut ms, s)).collect();
    assert_eq!(got, [true, true, false, false, false]);
}

#[test]
fn kexec_meta_corpus_replays() {
    replay("kexec_meta_restore", &kexec_meta::seeds(), kexec_meta::run);
}

#[test]
fn selftest_seeds_do_what_they_say() {
    let mut ms = Machines::new();
    let seeds = selftest::seeds();
    for s in &seeds[..8] {
        assert!(selftest::run(&mut ms, s), "shape {s:?} does not restore");
    }
    for s in &seeds[8..] {
        assert!(!selftest::run(&mut ms, s), "corrupted seed {s:?} restores");
    }
}

#[test]
fn selftest_corpus_replays() {
    replay("selftest_restore", &selftest::seeds(), selftest::run);
}
