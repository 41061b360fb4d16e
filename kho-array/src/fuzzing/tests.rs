use std::path::PathBuf;

use super::seeds::seeds;
use super::*;
use crate::{Field, PageFault, RunFault};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/array_restore")
}

/// What each seed must give: entries read back, or the field and a
/// matcher for the fault.
#[test]
fn seeds_give_the_expected_outcome() {
    for (name, input) in seeds() {
        let outcome = run(&input.encode());
        let want: &dyn Fn(&ArrayError) -> bool = match name {
            "bad-magic" => &|e| matches!(e, ArrayError::Descriptor { field: Field::Magic, .. }),
            "bad-version" => &|e| matches!(e, ArrayError::Descriptor { field: Field::Version, value: 2 }),
            "bad-reserved" => &|e| matches!(e, ArrayError::Descriptor { field: Field::Reserved, value: 1 }),
            "bad-first-misaligned" => {
                &|e| matches!(e, ArrayError::Page { page: 0, field: Field::First, fault: PageFault::Misaligned, .. })
            }
            "bad-first-not-ram" => {
                &|e| matches!(e, ArrayError::Page { page: 0, field: Field::First, fault: PageFault::NotRam(_), .. })
            }
            "bad-unpreserved" => &|e| matches!(e, ArrayError::Page { page: 0, fault: PageFault::NotClaimable(_), .. }),
            "bad-too-many-pages" => &|e| {
                matches!(
                    e,
                    ArrayError::Page { page: 1, field: Field::Next, fault: PageFault::TooManyPages { max: 1 }, .. }
                )
            },
            "bad-cycle-self" => &|e| matches!(e, ArrayError::Page { page: 1, fault: PageFault::Cycle, .. }),
            "bad-cycle-3" => &|e| matches!(e, ArrayError::Page { page: 3, field: Field::Next, .. }),
            "bad-zero-count" => &|e| matches!(e, ArrayError::Run { run: 0, word: 2, fault: RunFault::ZeroCount, .. }),
            "bad-escape-skip" => {
                &|e| matches!(e, ArrayError::Run { field: Field::Skip, fault: RunFault::EscapeSkip { skip: 1 }, .. })
            }
            "bad-overrun" => &|e| matches!(e, ArrayError::Run { fault: RunFault::Overruns { end: 513 }, .. }),
            "bad-escape-descends" => &|e| {
                matches!(
                    e,
                    ArrayError::Run {
                        run: 1,
                        word: 4,
                        field: Field::Position,
                        fault: RunFault::NotAscending { pos: 50, min: 101 },
                        ..
                    }
                )
            },
            "bad-start-descends" => &|e| {
                matches!(
                    e,
                    ArrayError::Page {
                        page: 1,
                        field: Field::Start,
                        fault: PageFault::NotAscending { start: 100, min: 101 },
                        ..
                    }
                )
            },
            "bad-run-overflow" => &|e| matches!(e, ArrayError::Run { run: 0, fault: RunFault::Overflow, .. }),
            "bad-skip-overflow" => {
                &|e| matches!(e, ArrayError::Run { run: 1, field: Field::Skip, fault: RunFault::Overflow, .. })
            }
            "bad-after-max" => &|e| matches!(e, ArrayError::Page { page: 1, fault: PageFault::AfterMax, .. }),
            "bad-zero-entry" => {
                &|e| matches!(e, ArrayError::Run { field: Field::Entry, fault: RunFault::ZeroEntry { index: 1 }, .. })
            }
            "bad-malformed-entry" => {
                &|e| matches!(e, ArrayError::Run { fault: RunFault::BadEntry { index: 1, raw: 0x1002 }, .. })
            }
            "bad-trailing" => &|e| {
                matches!(
                    e,
                    ArrayError::Run {
                        run: 1,
                        word: 6,
                        field: Field::Trailing,
                        fault: RunFault::Trailing { raw: 5 },
                        ..
                    }
                )
            },
            "bad-empty-page" => &|e| matches!(e, ArrayError::Page { page: 0, fault: PageFault::Empty, .. }),
            "bad-next-misaligned" => {
                &|e| matches!(e, ArrayError::Page { page: 1, field: Field::Next, fault: PageFault::Misaligned, .. })
            }
            _ => {
                let entries = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                let want = match name {
                    "valid-empty" => 0,
                    "valid-example" => 6,
                    "valid-dense-2-pages" => 512,
                    "valid-escapes-3-pages" => 8,
                    "valid-at-max" | "valid-position-0" => 1,
                    "valid-255-isolated" => 255,
                    _ => panic!("seed {name} has no expectation"),
                };
                assert_eq!(entries.len(), want, "{name}");
                continue;
            }
        };
        match outcome {
            Err(e) => assert!(want(&e), "{name}: unexpected error {e:?}"),
            Ok(_) => panic!("{name}: restored"),
        }
    }
}

#[test]
fn example_seed_reads_the_documented_entries() {
    let (_, input) = seeds().into_iter().find(|(n, _)| *n == "valid-example").expect("seed");
    let entries = run(&input.encode()).expect("valid");
    let want = [(5, 3), (6, 5), (7, 0x1_0000_8000), (1000, 1), (1 << 60, 19), (u64::MAX, 7)];
    assert_eq!(entries, want);
}

#[test]
fn input_encoding_round_trips() {
    for (name, input) in seeds() {
        let parsed = Input::parse(&input.encode());
        assert_eq!((parsed.desc, parsed.preserved, parsed.max_pages), (input.desc, input.preserved, input.max_pages));
        let flat = |i: &Input| i.segments.iter().map(|s| s.2.len()).sum::<usize>();
        assert_eq!(flat(&parsed), flat(&input), "{name}");
    }
    // Short and odd inputs parse (zero-filled, partial words dropped).
    assert_eq!(Input::parse(&[]).segments, []);
    assert_eq!(Input::parse(&[0; PREFIX + 4 + 3]).segments, [(0, 0, vec![])]);
}

/// Every checked-in corpus file goes through the fuzz target's function.
#[test]
fn corpus_replays() {
    let mut files: Vec<_> =
        std::fs::read_dir(corpus_dir()).expect("corpus dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= seeds().len(), "corpus holds {} files", files.len());
    let mut ok = 0;
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        assert!(data.len() <= 64 << 10, "{} is too large", file.display());
        ok += usize::from(run(&data).is_ok());
    }
    assert!(ok >= 7 && ok < files.len(), "{ok} of {} corpus files restore", files.len());
}

/// The seeds are checked in under their names (regenerate with
/// `cargo test -p kho-array -- --ignored write_seed_corpus`).
#[test]
fn corpus_holds_the_seeds() {
    for (name, input) in seeds() {
        let path = corpus_dir().join(format!("seed-{name}"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(data, input.encode(), "{} is stale", path.display());
    }
}

#[test]
#[ignore = "writes the seed files into fuzz/corpus/array_restore"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).expect("corpus dir");
    for (name, input) in seeds() {
        std::fs::write(corpus_dir().join(format!("seed-{name}")), input.encode()).expect("write seed");
    }
}
