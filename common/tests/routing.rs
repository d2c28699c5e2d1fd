//! Routing and queueing over a real `BackendTable`: least live + pending under the cap,
//! eligibility tiers, ejection, discovery updates, and the FIFO wait queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidegate_common::{BackendSpec, BackendState, BackendTable, NoSlot, QueuePolicy, Rejected};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spec(port: u16, capacity: u32, state: BackendState) -> BackendSpec {
    BackendSpec {
        address: addr(port),
        capacity,
        state,
    }
}

fn table(specs: &[BackendSpec]) -> Arc<BackendTable> {
    let t = Arc::new(BackendTable::new());
    t.set_backends(specs.iter().copied());
    t
}

#[test]
fn routes_to_the_least_occupied_backend_and_fills_evenly() {
    let t = table(&[
        spec(1, 10, BackendState::Ready),
        spec(2, 10, BackendState::Ready),
    ]);
    let held: Vec<_> = (0..6)
        .map(|_| t.try_reserve(Instant::now(), &[]).unwrap())
        .collect();
    let on = |p| {
        held.iter()
            .filter(|r| r.backend().address() == addr(p))
            .count()
    };
    assert_eq!((on(1), on(2)), (3, 3));
}

#[test]
fn ties_are_broken_at_random() {
    let t = table(&[
        spec(1, 10, BackendState::Ready),
        spec(2, 10, BackendState::Ready),
    ]);
    let mut firsts = [0; 2];
    for _ in 0..200 {
        let r = t.try_reserve(Instant::now(), &[]).unwrap();
        firsts[usize::from(r.backend().address().port() - 1)] += 1;
    }
    assert!(
        firsts[0] > 40 && firsts[1] > 40,
        "ties not spread: {firsts:?}"
    );
}

#[test]
fn caps_are_never_exceeded_and_full_is_reported() {
    let t = table(&[
        spec(1, 2, BackendState::Ready),
        spec(2, 1, BackendState::Ready),
    ]);
    let held: Vec<_> = (0..3)
        .map(|_| t.try_reserve(Instant::now(), &[]).unwrap())
        .collect();
    assert_eq!(
        t.try_reserve(Instant::now(), &[]).unwrap_err(),
        NoSlot::Full
    );
    drop(held);
    assert_eq!(t.load_snapshot(Instant::now()).total_pending(), 0);
}

#[test]
fn terminating_backends_are_used_only_when_no_ready_one_is_left() {
    let t = table(&[
        spec(1, 1, BackendState::Ready),
        spec(2, 5, BackendState::Terminating),
    ]);
    let first = t.try_reserve(Instant::now(), &[]).unwrap();
    assert_eq!(first.backend().address(), addr(1));
    // The ready backend is full, but still exists: terminating ones stay out.
    assert_eq!(
        t.try_reserve(Instant::now(), &[]).unwrap_err(),
        NoSlot::Full
    );
    t.set_backends([spec(2, 5, BackendState::Terminating)]);
    assert_eq!(
        t.try_reserve(Instant::now(), &[])
            .unwrap()
            .backend()
            .address(),
        addr(2)
    );
}

#[test]
fn draining_backends_get_nothing_new_and_keep_their_counts() {
    let t = table(&[spec(1, 5, BackendState::Ready)]);
    let mut r = t.try_reserve(Instant::now(), &[]).unwrap();
    r.promote();
    assert!(t.set_state(addr(1), BackendState::Draining));
    assert_eq!(
        t.try_reserve(Instant::now(), &[]).unwrap_err(),
        NoSlot::NoBackends
    );
    assert_eq!(t.load_snapshot(Instant::now()).total_live(), 1);
}

#[test]
fn ejected_backends_are_skipped_unless_all_are_ejected() {
    let t = table(&[
        spec(1, 5, BackendState::Ready),
        spec(2, 5, BackendState::Ready),
    ]);
    let now = Instant::now();
    let b1 = t.get(addr(1)).unwrap();
    t.eject(&b1, now, Duration::from_secs(10));
    for _ in 0..4 {
        std::mem::forget(t.try_reserve(now, &[]).unwrap()); // fill b2 without releasing
    }
    assert_eq!(b1.occupied(), 0);
    // Later than the ejection: b1 is back.
    let later = now + Duration::from_secs(11);
    assert_eq!(
        t.try_reserve(later, &[]).unwrap().backend().address(),
        addr(1)
    );
    // With both ejected, routing still tries one rather than refusing everyone.
    let b2 = t.get(addr(2)).unwrap();
    t.eject(&b2, now, Duration::from_secs(10));
    t.eject(&b1, now, Duration::from_secs(10));
    assert!(t.try_reserve(now, &[]).is_ok());
}

#[test]
fn exclude_skips_backends_already_tried() {
    let t = table(&[
        spec(1, 5, BackendState::Ready),
        spec(2, 5, BackendState::Ready),
    ]);
    let r = t.try_reserve(Instant::now(), &[addr(1)]).unwrap();
    assert_eq!(r.backend().address(), addr(2));
    assert_eq!(
        t.try_reserve(Instant::now(), &[addr(1), addr(2)])
            .unwrap_err(),
        NoSlot::NoBackends
    );
}

#[test]
fn removed_backends_stay_counted_until_their_last_connection_closes() {
    let t = table(&[
        spec(1, 5, BackendState::Ready),
        spec(2, 5, BackendState::Ready),
    ]);
    let mut r = t.try_reserve(Instant::now(), &[addr(2)]).unwrap();
    r.promote();
    t.set_backends([
        spec(2, 5, BackendState::Ready),
        spec(3, 7, BackendState::Ready),
    ]);
    let snap = t.load_snapshot(Instant::now());
    let b1 = snap.backends.iter().find(|b| b.address == addr(1)).unwrap();
    assert_eq!((b1.live, b1.state), (1, BackendState::Removed));
    assert_eq!(snap.backends.len(), 3);
    drop(r);
    t.prune();
    let addrs: Vec<_> = t
        .load_snapshot(Instant::now())
        .backends
        .iter()
        .map(|b| b.address)
        .collect();
    assert_eq!(addrs, vec![addr(2), addr(3)]);
}

#[test]
fn a_slot_is_never_held_on_a_backend_the_table_has_let_go() {
    // Routers read a snapshot, pick, then take the slot; meanwhile discovery removes and re-adds
    // the backend. A slot taken on a backend the table dropped would be counted nowhere.
    let t = table(&[spec(1, 1000, BackendState::Ready)]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (orphans, taken) = std::thread::scope(|s| {
        let routers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut orphans, mut taken) = (0u32, 0u32);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Ok(r) = t.try_reserve(Instant::now(), &[]) else {
                            continue;
                        };
                        taken += 1;
                        if !t.backends().iter().any(|b| Arc::ptr_eq(b, r.backend())) {
                            orphans += 1;
                        }
                        let req = t.route_request(Instant::now(), &[]);
                        if let Some(q) = &req
                            && !t.backends().iter().any(|b| Arc::ptr_eq(b, q.backend()))
                        {
                            orphans += 1;
                        }
                    }
                    (orphans, taken)
                })
            })
            .collect();
        for _ in 0..20_000 {
            t.set_backends([]);
            t.set_backends([spec(1, 1000, BackendState::Ready)]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        routers
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert!(taken > 0);
    assert_eq!(
        orphans, 0,
        "{orphans} of {taken} slots on a dropped backend"
    );
    let b = t.get(addr(1)).unwrap();
    assert_eq!((b.occupied(), b.inflight_requests()), (0, 0));
}

#[test]
fn plain_requests_ignore_the_cap_and_are_counted_in_flight() {
    let t = table(&[spec(1, 0, BackendState::Ready)]);
    let req = t.route_request(Instant::now(), &[]).unwrap();
    assert_eq!(t.get(addr(1)).unwrap().inflight_requests(), 1);
    drop(req);
    assert_eq!(t.get(addr(1)).unwrap().inflight_requests(), 0);
}

fn policy(timeout_ms: u64, max_waiting: usize) -> QueuePolicy {
    QueuePolicy {
        timeout: Duration::from_millis(timeout_ms),
        max_waiting,
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_table_times_out_queued_requests() {
    let t = table(&[spec(1, 1, BackendState::Ready)]);
    let _held = t.reserve(policy(0, 10), &[]).await.unwrap();
    assert_eq!(
        t.reserve(policy(0, 10), &[]).await.unwrap_err(),
        Rejected::Full
    );
    assert_eq!(
        t.reserve(policy(500, 10), &[]).await.unwrap_err(),
        Rejected::QueueTimeout
    );
    assert_eq!(t.slots().waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn queued_requests_get_freed_slots_in_arrival_order() {
    let t = table(&[spec(1, 1, BackendState::Ready)]);
    let held = t.reserve(policy(0, 10), &[]).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..3 {
        let (t2, tx) = (Arc::clone(&t), tx.clone());
        tokio::spawn(async move {
            let r = t2.reserve(policy(60_000, 10), &[]).await.unwrap();
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(r);
        });
        // Let each one reach the queue before the next arrives.
        while t.slots().waiting() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        t.reserve(policy(60_000, 3), &[]).await.unwrap_err(),
        Rejected::QueueFull
    );
    drop(held);
    let order = [
        rx.recv().await.unwrap(),
        rx.recv().await.unwrap(),
        rx.recv().await.unwrap(),
    ];
    assert_eq!(order, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_new_backend_wakes_every_waiter() {
    let t = table(&[spec(1, 1, BackendState::Ready)]);
    let _held = t.reserve(policy(0, 10), &[]).await.unwrap();
    let waiter = {
        let t = Arc::clone(&t);
        tokio::spawn(async move {
            t.reserve(policy(60_000, 10), &[])
                .await
                .map(|r| r.backend().address())
        })
    };
    while t.slots().waiting() < 1 {
        tokio::task::yield_now().await;
    }
    t.set_backends([
        spec(1, 1, BackendState::Ready),
        spec(2, 1, BackendState::Ready),
    ]);
    assert_eq!(waiter.await.unwrap().unwrap(), addr(2));
}
