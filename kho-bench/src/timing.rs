//! Timing (medians of repeated runs, a measurement and its limit
//! interleaved) and the progress lines on stderr.

use std::hint::spin_loop;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often to run a measurement.
#[derive(Clone, Copy, Debug)]
pub struct Reps {
    /// Untimed runs first (caches, page faults, branch predictors).
    pub warmup: usize,
    /// Timed runs; the median counts.
    pub runs: usize,
}

/// The median of `v` (the mean of the two middle values for an even count),
/// or zero for an empty slice.
pub fn median(v: &mut [Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 }
}

/// The median of `reps.runs` runs of `f`, which times its own work (so that
/// set-up and tear-down stay outside the measurement).
pub fn measure(reps: Reps, mut f: impl FnMut() -> Duration) -> Duration {
    for _ in 0..reps.warmup {
        f();
    }
    let mut v: Vec<Duration> = (0..reps.runs.max(1)).map(|_| f()).collect();
    median(&mut v)
}

/// Statistics of `reps.runs` runs of `f` after `reps.warmup` untimed ones.
pub fn measure_stats(reps: Reps, mut f: impl FnMut() -> Duration) -> Stats {
    for _ in 0..reps.warmup {
        f();
    }
    let mut v: Vec<Duration> = (0..reps.runs.max(1)).map(|_| f()).collect();
    Stats::of(&mut v)
}

/// Medians of `a` and of `b`, run alternately (a, b, a, b, ...) so that
/// drift in the machine's speed affects both alike.
pub fn measure_pair(
    reps: Reps,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    for _ in 0..reps.warmup {
        a();
        b();
    }
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for _ in 0..reps.runs.max(1) {
        va.push(a());
        vb.push(b());
    }
    (median(&mut va), median(&mut vb))
}

/// The median, minimum and maximum of repeated runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Median.
    pub median: Duration,
    /// Fastest run.
    pub min: Duration,
    /// Slowest run.
    pub max: Duration,
}

impl Stats {
    /// The statistics of `v` (all zero for an empty slice).
    pub fn of(v: &mut [Duration]) -> Stats {
        let median = median(v);
        Stats { median, min: v.first().copied().unwrap_or_default(), max: v.last().copied().unwrap_or_default() }
    }

    /// `(max - min) / min`, the relative spread.
    pub fn spread(&self) -> f64 {
        (self.max - self.min).as_secs_f64() / self.min.as_secs_f64()
    }
}

/// Statistics of each of `fs`, run in turn (f0, f1, ..., f0, f1, ...) so
/// that drift in the machine's speed affects all alike.
pub fn measure_all(reps: Reps, fs: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Stats> {
    for _ in 0..reps.warmup {
        for f in fs.iter_mut() {
            f();
        }
    }
    let mut v: Vec<Vec<Duration>> = vec![Vec::new(); fs.len()];
    for _ in 0..reps.runs.max(1) {
        for (f, times) in fs.iter_mut().zip(&mut v) {
            times.push(f());
        }
    }
    v.iter_mut().map(|t| Stats::of(t)).collect()
}

/// CPU time this thread has used (zero where the clock is unavailable).
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// As [`parallel`], also returning the CPU time all threads spent in
/// `work`, summed: with the same work split between threads, a sum that
/// stays at the one-thread figure means no contention, whatever the wall
/// time (which other processes on the machine may stretch).
pub fn parallel_cpu(threads: usize, work: impl Fn(usize) + Sync) -> (Duration, Duration) {
    let cpu = std::sync::Mutex::new(Duration::ZERO);
    let wall = parallel(threads, |i| {
        let start = thread_cpu_time();
        work(i);
        let used = thread_cpu_time().saturating_sub(start);
        if let Ok(mut c) = cpu.lock() {
            *c += used;
        }
    });
    (wall, cpu.into_inner().unwrap_or_default())
}

/// Spins until `cond` holds, yielding now and then (so that a machine with
/// fewer CPUs than spinning threads still makes progress).
fn spin_until(cond: impl Fn() -> bool) {
    let mut n = 0u32;
    while !cond() {
        n = n.wrapping_add(1);
        if n.is_multiple_of(4096) {
            std::thread::yield_now();
        } else {
            spin_loop();
        }
    }
}

/// Runs `work(0)` on the calling thread and `work(1)` .. `work(threads - 1)`
/// on threads spawned beforehand, and returns the time from the common
/// start until the last one finishes.
///
/// Thread creation stays outside the measurement, and the spawned threads
/// spin (rather than sleep) until the start, so that the measurement does
/// not include waking an idle CPU, which on virtual machines can slow the
/// first milliseconds of a fresh thread many times over.
pub fn parallel(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let threads = threads.max(1);
    let ready = AtomicUsize::new(0);
    let go = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 1..threads {
            let (ready, go, done, work) = (&ready, &go, &done, &work);
            s.spawn(move || {
                ready.fetch_add(1, Ordering::AcqRel);
                spin_until(|| go.load(Ordering::Acquire));
                work(i);
                done.fetch_add(1, Ordering::AcqRel);
            });
        }
        spin_until(|| ready.load(Ordering::Acquire) == threads - 1);
        if threads > 1 {
            // Let every CPU run at full speed before the clock starts.
            let warm = Instant::now();
            spin_until(|| warm.elapsed() >= Duration::from_millis(2));
        }
        let start = Instant::now();
        go.store(true, Ordering::Release);
        work(0);
        spin_until(|| done.load(Ordering::Acquire) == threads - 1);
        start.elapsed()
    })
}

/// Times `f` once.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Progress lines on stderr: `[3/14] tracker preserve order-0 random ... 1.2 s`.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    quiet: bool,
}

impl Progress {
    /// Progress over `total` steps; `quiet` prints nothing.
    pub fn new(total: usize, quiet: bool) -> Progress {
        Progress { total, done: 0, quiet }
    }

    /// Runs step `name`, printing its number before and its time after.
    pub fn step<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        self.done += 1;
        if !self.quiet {
            eprint!("[{}/{}] {name} ... ", self.done, self.total);
            let _ = std::io::stderr().flush();
        }
        let (out, d) = time(f);
        if !self.quiet {
            eprintln!("{:.1} s", d.as_secs_f64());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(&mut [ms(4), ms(1), ms(2), ms(100)]), ms(3));
        assert_eq!(median(&mut []), Duration::ZERO);
    }

    #[test]
    fn measure_runs_warmup_then_takes_the_median() {
        let mut calls = 0u64;
        let d = measure(Reps { warmup: 2, runs: 3 }, || {
            calls += 1;
            ms(calls)
        });
        assert_eq!(calls, 5);
        // Runs 3, 4, 5 are timed.
        assert_eq!(d, ms(4));
    }

    #[test]
    fn pair_alternates() {
        let order = std::cell::RefCell::new(String::new());
        let (a, b) = measure_pair(
            Reps { warmup: 1, runs: 2 },
            || {
                order.borrow_mut().push('a');
                ms(10)
            },
            || {
                order.borrow_mut().push('b');
                ms(20)
            },
        );
        assert_eq!(order.into_inner(), "ababab");
        assert_eq!((a, b), (ms(10), ms(20)));
    }

    #[test]
    fn stats_and_measure_all() {
        let s = Stats::of(&mut [ms(4), ms(2), ms(3)]);
        assert_eq!((s.median, s.min, s.max), (ms(3), ms(2), ms(4)));
        assert!((s.spread() - 1.0).abs() < 1e-9);
        let order = std::cell::RefCell::new(String::new());
        let mut a = || {
            order.borrow_mut().push('a');
            ms(1)
        };
        let mut b = || {
            order.borrow_mut().push('b');
            ms(2)
        };
        let mut c = || {
            order.borrow_mut().push('c');
            ms(3)
        };
        let st = measure_all(Reps { warmup: 1, runs: 2 }, &mut [&mut a, &mut b, &mut c]);
        assert_eq!(order.into_inner(), "abcabcabc");
        assert_eq!(st.iter().map(|s| s.median).collect::<Vec<_>>(), vec![ms(1), ms(2), ms(3)]);
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let a = thread_cpu_time();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < ms(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_time() > a);
        let (wall, cpu) = parallel_cpu(2, |_| {
            let s = Instant::now();
            while s.elapsed() < ms(5) {
                std::hint::spin_loop();
            }
        });
        assert!(wall >= ms(5) && cpu > Duration::ZERO);
    }

    #[test]
    fn parallel_runs_every_part_once() {
        for threads in [1, 2, 3] {
            let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            parallel(threads, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads}");
        }
    }

    #[test]
    fn progress_counts_steps() {
        let mut p = Progress::new(2, true);
        assert_eq!(p.step("one", || 7), 7);
        p.step("two", || ());
        assert_eq!(p.done, 2);
    }
}
