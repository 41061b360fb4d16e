//! What the kho lab's guest agent and its host share: the deterministic
//! contents of every memfd and region the lab hands over ([`pattern`]).
//! The agent itself is the `kho-lab-agent` binary (`src/main.rs`).

pub mod pattern;
