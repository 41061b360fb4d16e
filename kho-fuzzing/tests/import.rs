//! Replays the fuzz corpora of the harness in `kho_fuzzing::import`
//! (`track_import`, `v1_import`, `kho_data_import`, `blob_restore`)
//! through the same code the fuzz targets run, and checks that the seeds
//! are what they claim.

use kho_fuzzing::import as harness;

use kho_abi::RootVersion;

#[test]
fn seeds_are_valid_handovers() {
    let seeds = harness::seeds();
    assert_eq!(seeds.len(), 6);
    for seed in &seeds {
        // The seed must get past the import (run() panics on a broken
        // guarantee, so also check it imports, not merely survives).
        harness::run(seed);
        assert!(harness::imports(seed), "seed does not import: {:?}", harness::import_error(seed));
    }
    // Between them the seeds reach every root version.
    let versions: Vec<RootVersion> = seeds.iter().map(|s| harness::version_of(s, false).unwrap()).collect();
    for v in [RootVersion::V1, RootVersion::V2, RootVersion::V3, RootVersion::V4] {
        assert!(versions.contains(&v), "no seed reaches {v:?}: {versions:?}");
    }
}

#[test]
fn other_seeds_run() {
    for seed in harness::v1_seeds() {
        harness::run_v1(&seed);
        assert_eq!(harness::version_of(&seed, true), Some(RootVersion::V1), "a kho-v1 seed imports");
    }
    for seed in harness::kho_data_seeds() {
        assert!(harness::run_kho_data(&seed), "a kho_data seed imports");
    }
    for seed in harness::blob_seeds() {
        harness::run_blob(&seed);
    }
}

/// Replays `fuzz/corpus/TARGET` through `run`; returns the file count.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("the {target} corpus is checked in: {e}")) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn corpus_replays() {
    let n = replay("track_import", harness::run);
    assert!(n >= 10, "only {n} track_import corpus files");
    for (target, run) in [
        ("v1_import", harness::run_v1 as fn(&[u8])),
        ("kho_data_import", |d| {
            harness::run_kho_data(d);
        }),
        ("blob_restore", harness::run_blob),
    ] {
        let n = replay(target, run);
        assert!(n >= 2, "only {n} {target} corpus files");
    }
}

/// With `KHO_WRITE_FUZZ_SEEDS=1`, writes every seed into its corpus
/// (`seed-N` files; `ffi_incoming` reads the `track_import` format). Off by
/// default: the checked-in corpora are what the replay test reads.
#[test]
fn write_seeds_when_asked() {
    if std::env::var_os("KHO_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, seeds) in [
        ("track_import", harness::seeds()),
        ("ffi_incoming", harness::seeds()),
        ("v1_import", harness::v1_seeds()),
        ("kho_data_import", harness::kho_data_seeds()),
        ("blob_restore", harness::blob_seeds()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
