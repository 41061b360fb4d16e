//! Placeholder: the array bench lands in a later commit.
fn main() {}
