//! Replays the `kexec_meta_restore` fuzz corpus through the harness the
//! fuzz target runs, and checks what the seeds do.

mod harness {
    include!("../fuzz_support/restore.rs");
}

mod corpus {
    include!("../../kho-probe/fuzz_support/corpus.rs");
}

#[test]
fn seeds_do_what_they_say() {
    let got: Vec<bool> = harness::seeds().iter().map(|s| harness::run(s)).collect();
    assert_eq!(got, [true, true, false, false, false]);
}

#[test]
fn corpus_replays() {
    let n = corpus::replay("kexec_meta_restore", &harness::seeds(), |d| {
        harness::run(d);
    });
    assert!(n >= harness::seeds().len());
}
