//! Replays the `handover_ops` fuzz corpus (and the hand-written seeds)
//! through the same harness the fuzz target runs: random operation
//! sequences on the tracker, block sets, vmalloc areas and an array,
//! checked against models across a kexec.

use kho_fuzzing::ops as harness;

#[test]
fn seeds_run_and_cover_every_operation() {
    let seeds = harness::seeds();
    let mut kinds = std::collections::BTreeSet::new();
    for seed in &seeds {
        for op in harness::decode(seed) {
            kinds.insert(format!("{op:?}").split([' ', '{']).next().unwrap_or_default().to_string());
        }
        harness::run(seed);
    }
    assert_eq!(kinds.len(), 12, "operations the seeds use: {kinds:?}");
    // The encoder is the decoder's inverse on the seeds.
    for seed in &seeds {
        assert_eq!(&harness::encode(&harness::decode(seed)), seed);
    }
}

#[test]
fn decoding_is_bounded() {
    assert!(harness::decode(&[]).is_empty());
    assert_eq!(harness::decode(&vec![1u8; 10_000]).len(), harness::MAX_OPS);
}

#[test]
fn corpus_replays() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/handover_ops"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("the handover_ops corpus is checked in") {
        let path = entry.unwrap().path();
        harness::run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 4, "only {n} corpus files");
}

/// Writes the seeds into the corpus directory when asked
/// (`KHO_WRITE_SEEDS=1 cargo test -p kho-fuzzing --test ops write_seeds`).
#[test]
fn write_seeds() {
    if std::env::var_os("KHO_WRITE_SEEDS").is_none() {
        return;
    }
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/handover_ops"));
    for (i, seed) in harness::seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
    }
}
