//! The `kexec_meta_restore` fuzz target's harness, shared with the test
//! replaying `fuzz/corpus/kexec_meta_restore`. Byte 0 is the blob size
//! handed to the reader; the rest overwrites the blob's page (see
//! [`super`]).

use kho_abi::{Order, WithTracker};
use kho_kexec_meta::{inspect, restore, write};
use kho_sim::ModelTracker;

use crate::Machines;

/// Runs one input; panics only if the reader breaks a promise. Returns
/// whether the restore succeeded.
pub fn run(ms: &mut Machines, data: &[u8]) -> bool {
    let size = u64::from(data.first().copied().unwrap_or(73));
    let m = super::machine_of(ms, 1 << 20); // room for every shape
    let t = ModelTracker::new();
    let blob = write(&WithTracker::new(&*m, &t), "7.2.13", 1).expect("metadata");
    super::mutate(&m, &t.blocks(), data.get(1..).unwrap_or(&[]));
    let (m2, t2) = super::kexec(m, &t);
    let p2 = WithTracker::new(&*m2, &t2);
    super::check(
        &t2,
        &p2,
        |p| restore(p, blob, size),
        |p| inspect(p, blob, size),
        |r| r.meta().clone(),
        |_| vec![(blob, Order::ZERO)],
        false,
    )
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        vec![73],
        vec![4, 0, 0, 0, 1, 2], // version 2 in 4 bytes: reported, not refused
        vec![3],                // too short to hold a version
        vec![72],               // version 1 needs 73
        {
            let mut v = vec![73, 0, 4, 0, 65];
            v.extend([b'r'; 65]); // unterminated release
            v
        },
    ]
}
