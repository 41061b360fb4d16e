// The corpus side of the layer fuzz harnesses, shared through `include!`
// by each layer's replay test: every seed must be checked in under
// `fuzz/corpus/<target>/` (set `KHO_WRITE_SEEDS=1` to write them), and
// every file there is run through the harness.

use std::path::PathBuf;

/// The corpus directory of `target`.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Checks that every seed is in the corpus (writing them first when
/// `KHO_WRITE_SEEDS` is set), then replays the whole corpus through `run`;
/// returns the number of files replayed.
pub fn replay(target: &str, seeds: &[Vec<u8>], run: impl Fn(&[u8])) -> usize {
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
    for f in &files {
        run(f);
    }
    files.len()
}
