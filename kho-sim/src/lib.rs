//! A simulated machine for kho's tests, examples, benches and fuzzers.
