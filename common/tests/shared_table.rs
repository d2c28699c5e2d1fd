//! A table whose caps are shared with peers: admission under `min(cap, share)` in one
//! compare-and-swap, shares lowered never below what is occupied even while connections race
//! in, and routing weighed by the whole cluster's counts.

#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tidegate_common::share::Slots;
use tidegate_common::{BackendSpec, BackendState, BackendTable, NoSlot};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn shared(caps: &[(u16, u32)]) -> Arc<BackendTable> {
    let t = Arc::new(BackendTable::shared());
    t.set_backends(caps.iter().map(|&(port, capacity)| BackendSpec {
        address: addr(port),
        capacity,
        state: BackendState::Ready,
    }));
    t
}

#[test]
fn a_shared_backend_admits_up_to_its_share_and_never_lowers_below_what_it_holds() {
    let t = shared(&[(1, 10)]);
    assert!(t.is_shared());
    let reserve = || t.try_reserve(Instant::now(), &[]);
    assert_eq!(reserve().unwrap_err(), NoSlot::Full, "no share yet");
    let mut slots = &*t;
    slots.raise(addr(1), 3);
    let held: Vec<_> = (0..3).map(|_| reserve().unwrap()).collect();
    assert_eq!(reserve().unwrap_err(), NoSlot::Full, "share 3 of cap 10");
    assert_eq!(slots.lower(addr(1), 5), 0, "all three are occupied");
    drop(held);
    assert_eq!(slots.lower(addr(1), 2), 2);
    assert_eq!(t.get(addr(1)).unwrap().share(), 1);
    slots.raise(addr(1), 100);
    let load = t.load_snapshot(Instant::now());
    assert_eq!(load.backends[0].share, Some(101));
    assert_eq!(t.get(addr(1)).unwrap().limit(), 10, "the cap still binds");
}

#[test]
fn an_unshared_table_admits_up_to_the_cap_and_ignores_share_changes() {
    let t = Arc::new(BackendTable::new());
    t.set_backends([BackendSpec {
        address: addr(1),
        capacity: 2,
        state: BackendState::Ready,
    }]);
    let mut slots = &*t;
    assert_eq!(slots.lower(addr(1), 5), 0);
    let _a = t.try_reserve(Instant::now(), &[]).unwrap();
    let _b = t.try_reserve(Instant::now(), &[]).unwrap();
    assert!(t.try_reserve(Instant::now(), &[]).is_err());
    assert_eq!(t.load_snapshot(Instant::now()).backends[0].share, None);
}

#[test]
fn lowering_races_admissions_and_never_leaves_more_held_than_the_share() {
    let t = shared(&[(1, 1000)]);
    let mut slots = &*t;
    slots.raise(addr(1), 1000);
    let stop = AtomicBool::new(false);
    let given = std::thread::scope(|s| {
        let takers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut held = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        if let Ok(r) = t.try_reserve(Instant::now(), &[]) {
                            held.push(r);
                        }
                        if held.len() > 200 {
                            held.clear();
                        }
                    }
                    held
                })
            })
            .collect();
        let mut given = 0u32;
        for _ in 0..2000 {
            let mut slots = &*t;
            given += slots.lower(addr(1), 1);
            let b = t.get(addr(1)).unwrap();
            assert!(b.occupied() <= b.share(), "{b:?}");
        }
        stop.store(true, Ordering::Release);
        for h in takers {
            let held = h.join().unwrap();
            let b = t.get(addr(1)).unwrap();
            assert!(b.occupied() <= b.share(), "{b:?}");
            drop(held);
        }
        given
    });
    let b = t.get(addr(1)).unwrap();
    assert_eq!(
        b.share() + given,
        1000,
        "what came off plus what is left is the share"
    );
}

#[test]
fn routing_weighs_the_other_replicas_counts() {
    let t = shared(&[(1, 10), (2, 10)]);
    let mut slots = &*t;
    slots.raise(addr(1), 10);
    slots.raise(addr(2), 10);
    t.set_peer_counts(|a| if a == addr(1) { (6, 1) } else { (0, 0) });
    let picks: Vec<_> = (0..5)
        .map(|_| t.try_reserve(Instant::now(), &[]).unwrap())
        .collect();
    assert!(
        picks.iter().all(|r| r.backend().address() == addr(2)),
        "backend 1 already holds 7 elsewhere"
    );
    let load = t.load_snapshot(Instant::now());
    assert_eq!(load.backends[0].cluster_live, 6);
    assert_eq!(load.backends[1].cluster_occupied, 5);
}
