//! Replays the `luo_restore` fuzz corpus through the harness the fuzz
//! target runs, and checks what the seeds do.

mod harness {
    include!("../fuzz_support/restore.rs");
}

mod corpus {
    include!("../../kho-probe/fuzz_support/corpus.rs");
}

#[test]
fn seeds_do_what_they_say() {
    for shape in 0..64u8 {
        assert!(harness::run(&[shape]), "shape {shape:#x} does not restore");
    }
    for seed in harness::seeds().iter().skip(64) {
        assert!(!harness::run(seed), "corrupted seed {seed:?} restores");
    }
}

#[test]
fn corpus_replays() {
    let n = corpus::replay("luo_restore", &harness::seeds(), |d| {
        harness::run(d);
    });
    assert!(n >= harness::seeds().len());
}
