//! Hash benchmark: MurmurHash3-x64-128 as `bhash` feeds it (1 MiB pieces, the archive's
//! scan chunk) and in one piece, next to the bulk hash (XXH3-128) of hash sync, over the
//! same bytes in memory. Prints GB/s (10^9 bytes per second), the fastest of the runs.
//!
//! Run: `cargo bench -p walb-kernel --bench hash`. Environment: `WALB_BENCH_MB` (default
//! 256): MiB hashed per measurement; `WALB_BENCH_RUNS` (default 7): runs per measurement.

use std::hint::black_box;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use walb_kernel::hash::{bulk_hash, Murmur3};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fastest of `runs` runs of `f`, in seconds.
fn best(runs: usize, mut f: impl FnMut() -> [u8; 16]) -> f64 {
    (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// A hash over the whole buffer, as one measured case computes it.
type Case<'a> = (&'a str, &'a dyn Fn(&[u8]) -> [u8; 16]);

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let mb = env("WALB_BENCH_MB", 256);
    let runs = env("WALB_BENCH_RUNS", 7);
    let mut data = vec![0u8; mb << 20];
    rand::rngs::SmallRng::seed_from_u64(7).fill_bytes(&mut data);
    println!("walb-kernel hash benchmark: {mb} MiB in memory, best of {runs} runs");
    let cases: [Case; 4] = [
        ("murmur3-x64-128, 1 MiB pieces (bhash)", &|d| {
            let mut h = Murmur3::new(0);
            for c in d.chunks(1 << 20) {
                h.update(c);
            }
            h.finish()
        }),
        ("murmur3-x64-128, 4 KiB + 1 pieces", &|d| {
            let mut h = Murmur3::new(0);
            for c in d.chunks(4097) {
                h.update(c);
            }
            h.finish()
        }),
        ("murmur3-x64-128, one piece", &|d| {
            let mut h = Murmur3::new(0);
            h.update(d);
            h.finish()
        }),
        ("xxh3-128 bulk hash, 1 MiB bulks", &|d| {
            let mut x = [0u8; 16];
            for c in d.chunks(1 << 20) {
                let h = bulk_hash(c, 1);
                for (a, b) in x.iter_mut().zip(h) {
                    *a ^= b;
                }
            }
            x
        }),
    ];
    for (name, f) in cases {
        let s = best(runs, || f(black_box(&data)));
        println!(
            "  {name:<40} {s:8.4} s {:7.2} GB/s",
            data.len() as f64 / s / 1e9
        );
    }
}
