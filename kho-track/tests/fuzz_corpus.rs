//! Replays the `track_import` fuzz corpus through the same harness the fuzz
//! target runs, and checks that the seed handovers import.
#![cfg(not(loom))]
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

mod harness {
    include!("../fuzz_support/import.rs");
}

#[test]
fn seeds_are_valid_handovers() {
    let seeds = harness::seeds();
    assert_eq!(seeds.len(), 3);
    for seed in &seeds {
        // The seed must get past the import (run() panics on a broken
        // guarantee, so also check it imports, not merely survives).
        harness::run(seed);
        assert!(harness::imports(seed), "seed does not import: {:?}", harness::import_error(seed));
    }
}

#[test]
fn corpus_replays() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/track_import"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("the track_import corpus is checked in") {
        let path = entry.unwrap().path();
        harness::run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus files");
}
