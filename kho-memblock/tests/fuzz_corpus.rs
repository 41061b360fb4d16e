//! Replays the `memblock_restore` fuzz corpus through the harness the fuzz
//! target runs, and checks what the seeds do.

mod harness {
    include!("../fuzz_support/restore.rs");
}

mod corpus {
    include!("../../kho-probe/fuzz_support/corpus.rs");
}

#[test]
fn seeds_do_what_they_say() {
    let seeds = harness::seeds();
    for s in &seeds[..6] {
        assert!(harness::run(s), "shape {s:?} does not restore");
    }
    for s in &seeds[6..] {
        assert!(!harness::run(s), "corrupted seed {s:?} restores");
    }
}

#[test]
fn corpus_replays() {
    let n = corpus::replay("memblock_restore", &harness::seeds(), |d| {
        harness::run(d);
    });
    assert!(n >= harness::seeds().len());
}
