use std::collections::BTreeSet;
use std::path::PathBuf;

use super::seeds::{EXAMPLE_ENTRIES, seeds, val};
use super::*;
use kho_abi::chain::ChainFault;
use kho_array::format::{ARRAY_PAGE_WORDS as W, LayoutFault};
use kho_array::{Field, PageFault, RunFault};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/array_restore")
}

/// The entries a valid seed holds, from the positions it was built with.
fn expected_entries(name: &str) -> Option<Vec<(u64, u64)>> {
    let dense = |start: u64, n: u64| (0..n).map(|i| (start + i, val(i))).collect();
    Some(match name {
        "valid-empty" => vec![],
        "valid-example" => EXAMPLE_ENTRIES.to_vec(),
        "valid-dense-508" => dense(0x7000, 508),
        "valid-dense-1000-2-pages" => dense(0x7000, 1000),
        "valid-widths-0" => vec![(40, val(0)), (41, 8), (42, val(2))],
        "valid-max-runs" => dense(100, W as u64 - 3),
        "valid-285-isolated" => (0..285).map(|k| (7 + (k << 50), val(k))).collect(),
        "valid-straddle" => vec![(10, val(1)), (10 + (1 << 50), val(2)), (10 + (1 << 51) + 1, val(3))],
        "valid-repacked" => vec![(0, val(0)), (10, val(10)), (11, val(11))],
        "valid-at-max" => vec![(u64::MAX, u64::MAX)],
        "valid-max-widths" => vec![(u64::MAX, val(5))],
        "valid-3-pages" => vec![
            (0, val(0)),
            (1, val(1)),
            (12, 8),
            (1 << 40, val(2)),
            (u64::MAX - 1, 0xffff_ffff_ffff_fff8),
            (u64::MAX, u64::MAX),
        ],
        _ => return None,
    })
}

/// Whether `e` is the error a bad seed must give: its variant, field and
/// fault, with their values.
fn expected_error(name: &str, e: &ArrayError) -> Option<bool> {
    use ArrayError::{Descriptor, Page, Run};
    let layout = |e: &ArrayError, page: u64, want: LayoutFault| {
        matches!(e, Page { page: p, field: Field::Layout, fault: PageFault::Layout { fault, .. }, .. }
            if *p == page && *fault == want)
    };
    Some(match name {
        "bad-magic" => matches!(e, Descriptor { field: Field::Magic, value: 0x4b41_5253 }),
        "bad-version" => matches!(e, Descriptor { field: Field::Version, value: 2 }),
        "bad-reserved" => matches!(e, Descriptor { field: Field::Reserved, value: 1 }),
        "bad-first-misaligned" => {
            matches!(e, Page { page: 0, field: Field::First, fault: PageFault::Link(ChainFault::Misaligned), .. })
        }
        "bad-first-not-ram" => {
            matches!(e, Page { page: 0, field: Field::First, fault: PageFault::Link(ChainFault::NotRam(_)), .. })
        }
        "bad-unpreserved" => {
            matches!(e, Page { page: 0, field: Field::First, fault: PageFault::Link(ChainFault::NotClaimable(_)), .. })
        }
        "bad-too-many-pages" => {
            matches!(
                e,
                Page { page: 1, field: Field::Next, fault: PageFault::Link(ChainFault::TooLong { max: 1 }), .. }
            )
        }
        "bad-cycle-self" => {
            matches!(e, Page { page: 1, field: Field::Next, fault: PageFault::Link(ChainFault::Cycle { .. }), .. })
        }
        // Brent's saved page has moved on to page 2 when page 0 comes
        // round again: restore's claim refuses the page, which the walker
        // finds at position 0 of this walk.
        "bad-cycle-3" => matches!(
            e,
            Page { page: 3, field: Field::Next, fault: PageFault::Link(ChainFault::Cycle { first: 0 }), .. }
        ),
        "bad-next-misaligned" => {
            matches!(e, Page { page: 1, field: Field::Next, fault: PageFault::Link(ChainFault::Misaligned), .. })
        }
        "bad-start-descends" => matches!(
            e,
            Page { page: 1, field: Field::Start, fault: PageFault::NotAscending { start: 99, min: 101 }, .. }
        ),
        "bad-start-at-last" => matches!(
            e,
            Page { page: 1, field: Field::Start, fault: PageFault::NotAscending { start: 100, min: 101 }, .. }
        ),
        "bad-after-max" => matches!(e, Page { page: 1, field: Field::Start, fault: PageFault::AfterMax, .. }),
        "bad-layout-reserved" => {
            layout(e, 0, LayoutFault::Reserved)
                && matches!(e, Page { fault: PageFault::Layout { raw: 0x1_4002_0004, .. }, .. })
        }
        "bad-layout-no-runs" => layout(e, 0, LayoutFault::NoRuns),
        "bad-layout-count-bits" => layout(e, 0, LayoutFault::CountBits),
        "bad-layout-skip-bits" => layout(e, 0, LayoutFault::SkipBits),
        "bad-layout-too-many-runs" | "bad-layout-stream-too-big" => layout(e, 0, LayoutFault::TooManyRuns),
        "bad-overrun" => matches!(
            e,
            Run { page: 0, run: 0, word, field: Field::Count, fault: RunFault::Overruns { end, limit }, .. }
                if *word == W - 1 && *end == W && *limit == W - 1
        ),
        "bad-run-overflow" | "bad-skip-wraps" => matches!(
            e,
            Run { page: 0, run: 0, word, field: Field::Skip, fault: RunFault::Overflow, .. } if *word == W - 1
        ),
        "bad-skip-overflow" => matches!(
            e,
            Run { page: 0, run: 1, word, field: Field::Skip, fault: RunFault::Overflow, .. } if *word == W - 1
        ),
        // Run 284's descriptor starts at stream bit 284 * 50.
        "bad-isolated-overflow" => matches!(
            e,
            Run { page: 0, run: 284, word, field: Field::Skip, fault: RunFault::Overflow, .. }
                if *word == W - 1 - 284 * 50 / 64
        ),
        "bad-zero-entry" => matches!(
            e,
            Run { page: 0, run: 0, word, field: Field::Entry, fault: RunFault::ZeroEntry { index: 1 }, .. }
                if *word == W - 1
        ),
        "bad-malformed-entry" => matches!(
            e,
            Run {
                page: 0,
                run: 2,
                word,
                field: Field::Entry,
                fault: RunFault::BadEntry { index: 0, raw: 0x1002 },
                ..
            } if *word == W - 3
        ),
        "bad-free-word" => {
            matches!(e, Run { run: 4, word: 9, field: Field::Free, fault: RunFault::NotZero { raw: 1 }, .. })
        }
        "bad-free-word-last" => matches!(
            e,
            Run { run: 4, word, field: Field::Free, fault: RunFault::NotZero { raw: 0x8000_0000_0000_0000 }, .. }
                if *word == W - 6
        ),
        "bad-free-word-widths-0" => matches!(
            e,
            Run { run: 1, word, field: Field::Free, fault: RunFault::NotZero { raw: 1 }, .. } if *word == W - 1
        ),
        "bad-padding" => matches!(
            e,
            Run { run: 4, word, field: Field::Padding, fault: RunFault::NotZero { raw: 1 }, .. } if *word == W - 5
        ),
        "bad-padding-top" => matches!(
            e,
            Run { run: 4, word, field: Field::Padding, fault: RunFault::NotZero { raw }, .. }
                if *word == W - 5 && *raw == 1 << 55
        ),
        _ => return None,
    })
}

/// Every seed through the fuzz target's function: valid ones read back the
/// entries they were built with, bad ones fail with their own error.
#[test]
fn seeds_give_the_expected_outcome() {
    let all = seeds();
    let names: BTreeSet<&str> = all.iter().map(|s| s.0).collect();
    assert_eq!(names.len(), all.len(), "seed names are unique");
    for (name, input) in all {
        let outcome = run(&input.encode());
        if name.starts_with("valid-") {
            let want = expected_entries(name).unwrap_or_else(|| panic!("seed {name} has no expectation"));
            let got = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
            continue;
        }
        assert!(name.starts_with("bad-"), "seed {name}");
        let e = match outcome {
            Err(e) => e,
            Ok(entries) => panic!("{name}: restored {} entries", entries.len()),
        };
        match expected_error(name, &e) {
            Some(true) => {}
            Some(false) => panic!("{name}: unexpected error {e:?}"),
            None => panic!("seed {name} has no expectation"),
        }
    }
}

/// Every rule of the description has a seed that breaks it.
#[test]
fn every_rule_has_a_bad_seed() {
    let bad: Vec<ArrayError> = seeds().iter().filter_map(|(_, input)| run(&input.encode()).err()).collect();
    let layout = |want: LayoutFault| {
        bad.iter()
            .any(|e| matches!(e, ArrayError::Page { fault: PageFault::Layout { fault, .. }, .. } if *fault == want))
    };
    for f in [LayoutFault::Reserved, LayoutFault::NoRuns, LayoutFault::CountBits, LayoutFault::SkipBits] {
        assert!(layout(f), "{f:?}");
    }
    assert!(layout(LayoutFault::TooManyRuns));
    let page = |f: fn(&PageFault) -> bool| bad.iter().any(|e| matches!(e, ArrayError::Page { fault, .. } if f(fault)));
    assert!(page(|f| matches!(f, PageFault::Link(ChainFault::Misaligned))));
    assert!(page(|f| matches!(f, PageFault::Link(ChainFault::NotRam(_)))));
    assert!(page(|f| matches!(f, PageFault::Link(ChainFault::NotClaimable(_)))));
    assert!(page(|f| matches!(f, PageFault::Link(ChainFault::TooLong { .. }))));
    assert!(page(|f| matches!(f, PageFault::Link(ChainFault::Cycle { .. }))));
    assert!(page(|f| matches!(f, PageFault::NotAscending { .. })));
    assert!(page(|f| matches!(f, PageFault::AfterMax)));
    let run_fault = |field: Field, f: fn(&RunFault) -> bool| {
        bad.iter().any(|e| matches!(e, ArrayError::Run { field: x, fault, .. } if *x == field && f(fault)))
    };
    assert!(run_fault(Field::Count, |f| matches!(f, RunFault::Overruns { .. })));
    assert!(run_fault(Field::Skip, |f| matches!(f, RunFault::Overflow)));
    assert!(run_fault(Field::Entry, |f| matches!(f, RunFault::ZeroEntry { .. })));
    assert!(run_fault(Field::Entry, |f| matches!(f, RunFault::BadEntry { .. })));
    assert!(run_fault(Field::Free, |f| matches!(f, RunFault::NotZero { .. })));
    assert!(run_fault(Field::Padding, |f| matches!(f, RunFault::NotZero { .. })));
    for field in [Field::Magic, Field::Version, Field::Reserved] {
        assert!(bad.iter().any(|e| matches!(e, ArrayError::Descriptor { field: x, .. } if *x == field)), "{field}");
    }
}

/// The worked example page of `DESIGN.md` is what the writer writes for
/// its entries, so the seed and the description agree with the crate.
#[test]
fn example_seed_is_what_the_writer_writes() {
    use kho_abi::WithTracker;
    use kho_sim::{Machine, MachineConfig, ModelTracker};

    let m = Machine::new(MachineConfig::default()).expect("machine");
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    for (pos, raw) in EXAMPLE_ENTRIES {
        w.push(pos, Entry::from_raw(raw).expect("entry")).expect("push");
    }
    let mut bytes = std::vec![0u8; W * 8];
    m.read(PhysAddr::new(a.descriptor().first), &mut bytes).expect("read");
    let words: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
    assert_eq!(words, seeds::example_page());
    a.destroy(&p).expect("destroy");
    assert_eq!(m.outstanding_pages(), 0);
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
    let valid = seeds().iter().filter(|s| s.0.starts_with("valid-")).count();
    let mut ok = 0;
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        assert!(data.len() <= 64 << 10, "{} is too large", file.display());
        ok += usize::from(run(&data).is_ok());
    }
    assert!(ok >= valid && ok < files.len(), "{ok} of {} corpus files restore", files.len());
}

/// The seeds are checked in under their names (regenerate with
/// `cargo test -p kho-fuzzing -- --ignored write_seed_corpus`).
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
