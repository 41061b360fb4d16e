//! Replays the `memfd_restore` fuzz corpus through the harness the fuzz
//! target runs, and checks what the seeds do.

mod harness {
    include!("../fuzz_support/restore.rs");
}

mod corpus {
    include!("../../kho-probe/fuzz_support/corpus.rs");
}

#[test]
fn unmutated_shapes_restore() {
    for shape in [0u8, 1, 3, 51, 60, 0x41, 0x55, 0x81, 0xc4, 0xff] {
        assert!(harness::run(&[shape]), "shape {shape:#x} does not restore");
    }
}

#[test]
fn corpus_replays() {
    let seeds = harness::seeds();
    for s in seeds.iter().skip(12) {
        assert!(!harness::run(s), "corrupted seed {s:?} restores");
    }
    let n = corpus::replay("memfd_restore", &seeds, |d| {
        harness::run(d);
    });
    assert!(n >= seeds.len());
}
