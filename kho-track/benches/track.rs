//! Tracker benchmarks, each beside its limit from DESIGN.md "Performance
//! targets", measured in the same run; the ratios are printed at the end.
//!
//! `cargo bench -p kho-track --bench track`

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use kho_abi::{Order, PAGE_SIZE, PhysAddr, RadixKey};
use kho_sim::{Machine, MachineConfig};
use kho_track::walk::{Guard, TreeView};
use kho_track::{Tracker, TrackerOptions};

/// Pages preserved per measured iteration: 256 MiB of order-0 pages.
const PAGES: u64 = (256 << 20) / PAGE_SIZE as u64;

fn machine() -> Machine {
    Machine::new(MachineConfig { ram_size: 1 << 30, scratch: vec![], ..MachineConfig::default() }).expect("machine")
}

fn pa_of(m: &Machine, page: u64) -> PhysAddr {
    PhysAddr::new(m.ram_base().as_u64() + page * PAGE_SIZE as u64)
}

/// A fixed pseudo-random permutation of `0..n` (n a power of two).
fn shuffled(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Times `work` on a fresh tracker per iteration; creation and destruction
/// are outside the measurement.
fn time_tracker(m: &Machine, iters: u64, work: &dyn Fn(&Tracker<&Machine>)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Tracker::new(m, &[], TrackerOptions::default()).expect("tracker");
        let start = Instant::now();
        work(&t);
        total += start.elapsed();
        t.destroy();
    }
    total
}

/// The limit: an atomic bit-set into a flat preallocated bitmap.
fn time_bitmap(iters: u64, pages: &[u64], threads: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let bitmap: Vec<AtomicU64> = (0..PAGES / 64 * 4).map(|_| AtomicU64::new(0)).collect();
        let set = |chunk: &[u64]| {
            for &p in chunk {
                bitmap[(p / 64) as usize].fetch_or(1 << (p % 64), Ordering::Relaxed);
            }
        };
        let start = Instant::now();
        if threads == 1 {
            // No thread spawned inside the timing: the tracker runs inline too.
            set(pages);
        } else {
            std::thread::scope(|s| {
                for chunk in pages.chunks(pages.len().div_ceil(threads)) {
                    s.spawn(move || set(chunk));
                }
            });
        }
        total += start.elapsed();
        black_box(&bitmap);
    }
    total
}

fn preserve(c: &mut Criterion) {
    let m = machine();
    let seq: Vec<u64> = (0..PAGES).collect();
    let rnd = shuffled(PAGES);
    let mut g = c.benchmark_group("preserve");
    g.sample_size(10);
    for (name, pages) in [("order0-sequential", &seq), ("order0-random", &rnd)] {
        g.bench_function(format!("{name}/tracker"), |b| {
            b.iter_custom(|iters| {
                time_tracker(&m, iters, &|t| {
                    for &p in pages.iter() {
                        t.preserve_folio(pa_of(&m, p), Order::ZERO).expect("preserve");
                    }
                })
            })
        });
        g.bench_function(format!("{name}/bitmap-limit"), |b| b.iter_custom(|iters| time_bitmap(iters, pages, 1)));
    }
    // Mixed orders: the same 256 MiB as blocks of orders 0..=9 in turn.
    let mut mixed = Vec::new();
    let (mut page, mut o) = (0u64, 0u32);
    while page + (1 << o) <= PAGES {
        mixed.push((page, o));
        page += 1 << o;
        o = (o + 1) % 10;
        while page % (1 << o) != 0 {
            o = 0;
        }
    }
    g.bench_function("mixed-orders/tracker", |b| {
        b.iter_custom(|iters| {
            time_tracker(&m, iters, &|t| {
                for &(p, o) in &mixed {
                    t.preserve_folio(pa_of(&m, p), Order::new(u64::from(o), "o").expect("order")).expect("preserve");
                }
            })
        })
    });
    let mixed_heads: Vec<u64> = mixed.iter().map(|&(p, _)| p).collect();
    g.bench_function("mixed-orders/bitmap-limit", |b| b.iter_custom(|iters| time_bitmap(iters, &mixed_heads, 1)));
    // Two threads on disjoint halves against one thread doing both.
    for threads in [1usize, 2] {
        g.bench_function(format!("order0-sequential-{threads}t/tracker"), |b| {
            b.iter_custom(|iters| {
                time_tracker(&m, iters, &|t| {
                    std::thread::scope(|s| {
                        for chunk in seq.chunks(seq.len() / threads) {
                            let m = &m;
                            s.spawn(move || {
                                for &p in chunk {
                                    t.preserve_folio(pa_of(m, p), Order::ZERO).expect("preserve");
                                }
                            });
                        }
                    });
                })
            })
        });
    }
    g.finish();
}

/// Collects the leaf pages of a tree (the limit scans them directly).
fn leaves(m: &Machine, root: PhysAddr) -> Vec<(u64, &[kho_track::sync::AtomicU64; kho_track::mem::WORDS])> {
    let mut out = Vec::new();
    let _ = TreeView::new(m, root)
        .for_each_leaf::<()>(&mut Guard::trusted(), &mut |base, words| {
            out.push((base, words));
            Ok(ControlFlow::Continue(()))
        })
        .expect("walk");
    out
}

fn walks(c: &mut Criterion) {
    // The kernel's measured case: 2 GiB of order-0 pages (it reported
    // 526,386 keys walked in 21.8 ms with per-key work). Here one page in
    // every 4096 is left out, so the range walk has runs to find.
    let m = Machine::new(MachineConfig { ram_size: 3 << 30, scratch: vec![], ..MachineConfig::default() })
        .expect("machine");
    let t = Tracker::new(&m, &[], TrackerOptions::default()).expect("tracker");
    let walk_pages = (2u64 << 30) / PAGE_SIZE as u64;
    for p in 0..walk_pages {
        if p % 4096 != 4095 {
            t.preserve_folio(pa_of(&m, p), Order::ZERO).expect("preserve");
        }
    }
    let root = t.tree_root();
    let leaf_pages = leaves(&m, root);
    let mut g = c.benchmark_group("walk");
    g.sample_size(20);
    g.bench_function("per-block/tracker", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            let _ = t.for_each_block::<()>(&mut |pa, o| {
                sum = sum.wrapping_add(pa.as_u64() ^ u64::from(o.get()));
                ControlFlow::Continue(())
            });
            black_box(sum)
        })
    });
    g.bench_function("per-block/leaf-scan-limit", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            let mut f = |pa: u64, o: u32| sum = sum.wrapping_add(pa ^ u64::from(o));
            for &(base, words) in &leaf_pages {
                for (w, word) in words.iter().enumerate() {
                    let mut bits = word.load(Ordering::Relaxed);
                    while bits != 0 {
                        let key =
                            RadixKey::from_raw(base | (w as u64 * 64 + u64::from(bits.trailing_zeros()))).expect("key");
                        bits &= bits - 1;
                        f(key.pa().as_u64(), key.order().get());
                    }
                }
            }
            black_box(sum)
        })
    });
    g.bench_function("ranges/tracker", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let _ = t.for_each_range::<()>(&mut |pa, len| {
                n = n.wrapping_add(pa.as_u64() ^ len);
                ControlFlow::Continue(())
            });
            black_box(n)
        })
    });
    g.bench_function("ranges/leaf-scan-limit", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &(_, words) in &leaf_pages {
                for word in words.iter() {
                    acc = acc.wrapping_add(word.load(Ordering::Relaxed));
                }
            }
            black_box(acc)
        })
    });
    g.finish();
    let mut ranges = 0;
    let _ = t.for_each_range::<()>(&mut |_, _| {
        ranges += 1;
        ControlFlow::Continue(())
    });
    println!(
        "walk tree: {} keys in {} tree pages, {ranges} ranges",
        walk_pages - walk_pages / 4096,
        t.tree_pages().unwrap_or(0)
    );
    t.destroy();
}

/// Mean time of a finished benchmark, from criterion's estimates file.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.ancestors().nth(3)?;
    let path = target.join("criterion").join(group).join(id.replace('/', "_")).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.find("\"mean\"")?..];
    let pe = &after[after.find("\"point_estimate\":")? + 17..];
    pe[..pe.find([',', '}'])?].trim().parse().ok()
}

fn report() {
    println!("\nratios (tracker / limit, same run; targets from DESIGN.md):");
    let rows = [
        ("preserve", "order0-sequential/tracker", "order0-sequential/bitmap-limit", "<= 2.0"),
        ("preserve", "order0-random/tracker", "order0-random/bitmap-limit", "<= 2.0"),
        ("preserve", "mixed-orders/tracker", "mixed-orders/bitmap-limit", "(no target)"),
        ("walk", "per-block/tracker", "per-block/leaf-scan-limit", "<= 2.0"),
        ("walk", "ranges/tracker", "ranges/leaf-scan-limit", "<= 1.5"),
    ];
    for (group, a, b, target) in rows {
        match (mean_ns(group, a), mean_ns(group, b)) {
            (Some(x), Some(y)) => println!("  {group}/{a:<28} {:>8.2}x   target {target}", x / y),
            _ => println!("  {group}/{a}: not measured"),
        }
    }
    if let (Some(one), Some(two)) =
        (mean_ns("preserve", "order0-sequential-1t/tracker"), mean_ns("preserve", "order0-sequential-2t/tracker"))
    {
        println!("  preserve 2 threads speed-up over 1: {:.2}x   target >= 1.7", one / two);
    }
}

criterion_group!(benches, preserve, walks);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
