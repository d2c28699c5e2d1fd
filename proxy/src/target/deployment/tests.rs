//! The pods the policy sees, and how decisions are recorded.

use std::net::SocketAddr;

use tidegate_common::{BackendState, BackendTable};

use super::*;

fn ep(port: u16, condition: Condition) -> Endpoint {
    Endpoint {
        address: SocketAddr::from(([10, 0, 0, 1], port)),
        pod: Some(format!("echo-{port}")),
        condition,
        capacity: None,
    }
}

#[test]
fn pods_are_ready_draining_booting_and_the_rest_of_spec_replicas() {
    let eps = [
        ep(1, Condition::Ready),
        ep(2, Condition::Ready),
        ep(3, Condition::NotReady),
        ep(4, Condition::Terminating),
        ep(5, Condition::Stopping),
    ];
    let draining = [eps[1].address].into();
    let load = LoadSnapshot::default();
    let pods = observations(&eps, &draining, Some(5), &load);
    let phases: Vec<PodPhase> = pods.iter().map(|p| p.phase).collect();
    use PodPhase::*;
    assert_eq!(phases, [Ready, Draining, Booting, Booting, Booting]);
    assert_eq!(pods[0].id, pod_id(&eps[0]));
    assert_ne!(pods[0].id, pods[1].id);
    assert_eq!(
        observations(&eps, &draining, Some(1), &load).len(),
        3,
        "never negative"
    );
}

#[test]
fn decisions_are_clamped_and_the_newest_wins() {
    let table = Arc::new(BackendTable::new());
    let catalog = Arc::new(Catalog::new(Arc::clone(&table), 10));
    let t = Target::new(catalog, 2, 6, 0);
    assert_eq!(
        t.desired(),
        2,
        "min until the Deployment is read or a decision made"
    );
    t.set_view(|s| s.replicas = Some(4));
    assert_eq!(t.desired(), 4);
    let mut rx = t.order.subscribe();
    t.set_desired(9, 9);
    assert_eq!(
        t.order(),
        Some(Order {
            replicas: 6,
            serving: 6
        })
    );
    t.set_desired(1, 0);
    assert_eq!(
        t.order(),
        Some(Order {
            replicas: 2,
            serving: 0
        })
    );
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        *rx.borrow_and_update(),
        Some(Order {
            replicas: 2,
            serving: 0
        })
    );
    assert_eq!(
        table
            .backends()
            .iter()
            .filter(|b| b.state() == BackendState::Ready)
            .count(),
        0
    );
}
