//! Routing micro-benches: picking the least-loaded backend among 10 / 100 / 1,000, alone and with
//! other threads reserving and releasing at the same time, and one reserve → promote → release
//! cycle. Run with `cargo bench -p tidegate-common --bench routing`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tidegate_common::{BackendSpec, BackendState, BackendTable};

fn table(n: u16) -> Arc<BackendTable> {
    let t = Arc::new(BackendTable::new());
    t.set_backends((0..n).map(|i| BackendSpec {
        address: SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 9000)),
        capacity: 1_000_000,
        state: BackendState::Ready,
    }));
    t
}

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("reserve_promote_release");
    for n in [10u16, 100, 1000] {
        let t = table(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
            b.iter(|| {
                let mut r = t.try_reserve(Instant::now(), &[]).unwrap();
                r.promote();
                drop(r);
            })
        });
    }
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("reserve_release_with_1_other_thread_churning");
    for n in [10u16, 100, 1000] {
        let t = table(n);
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let held: Vec<_> = (0..64)
                        .filter_map(|_| t.try_reserve(Instant::now(), &[]).ok())
                        .collect();
                    drop(held);
                }
            })
        };
        g.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
            b.iter(|| drop(t.try_reserve(Instant::now(), &[]).unwrap()))
        });
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, cycle, contended);
criterion_main!(benches);
