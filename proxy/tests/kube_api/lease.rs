//! Leader election with a real Lease: one writer, takeover after the holder dies, stepping
//! down within one renew period.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tidegate_proxy::target::ScaleTarget;

use crate::kube_support::*;
use crate::support::{Backend, wait_until};
use crate::{config, with_lease};

pub async fn lease(admin: &kube::Client, ns: &str) -> Option<Lease> {
    Api::<Lease>::namespaced(admin.clone(), ns)
        .get_opt("tidegate")
        .await
        .unwrap()
}

pub fn holder(l: &Option<Lease>) -> Option<String> {
    l.as_ref()?.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn one_lease_one_writer_and_a_takeover_when_the_holder_dies() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "lease").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    let b = Backend::start().await;
    put_slice(&admin, &ns, slice("echo", "s-a", b.addr, "pod-a", READY)).await;
    let only = ["kube-discovery", "kube-leader", "kube-deployment"];
    let one = Running::start(with_lease(config(&ns, ADMIN, true), &ns, "one"), &only);
    let two = Running::start(with_lease(config(&ns, ADMIN, true), &ns, "two"), &only);
    one.target().set_desired(3, 3);
    two.target().set_desired(5, 5);
    wait_until("exactly one leader", || async {
        one.leading() != two.leading()
    })
    .await;
    let (leader, follower, want, other) = if one.leading() {
        (one, two, 3, 5)
    } else {
        (two, one, 5, 3)
    };
    wait_until("the leader's value", || async {
        replicas(&admin, &ns, "echo").await == want
    })
    .await;
    let reads = follower.target().reads();
    wait_until("the follower keeps looking", || async {
        follower.target().reads() >= reads + 3
    })
    .await;
    assert_eq!(follower.target().writes(), 0, "only the holder writes");
    assert!(!follower.leading() && leader.leading());
    assert_eq!(replicas(&admin, &ns, "echo").await, want);
    let leads = |r: &Running| r.handles.scaler.as_ref().map(|s| s.view().leader);
    assert_eq!(leads(&leader), Some(true));
    assert_eq!(leads(&follower), Some(false));

    let t0 = Instant::now();
    leader.kill();
    wait_until("the follower takes over", || async { follower.leading() }).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not before the lease expired ({took:?})"
    );
    wait_until("the new leader's value", || async {
        replicas(&admin, &ns, "echo").await == other
    })
    .await;
    let l = lease(&admin, &ns).await;
    assert_eq!(
        holder(&l),
        Some(if want == 3 { "two" } else { "one" }.to_owned())
    );
    assert!(l.unwrap().spec.unwrap().lease_transitions.unwrap() >= 1);
    follower.stop().await;
    assert_eq!(
        holder(&lease(&admin, &ns).await),
        None,
        "a graceful stop releases the lease"
    );
}

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn a_holder_that_loses_the_lease_stops_within_one_renew_period() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "steal").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    let only = ["kube-discovery", "kube-leader", "kube-deployment"];
    let one = Running::start(with_lease(config(&ns, ADMIN, true), &ns, "one"), &only);
    wait_until("leading", || async { one.leading() }).await;
    let api = Api::<Lease>::namespaced(admin.clone(), &ns);
    let mut l = lease(&admin, &ns).await.unwrap();
    l.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    api.replace("tidegate", &Default::default(), &l)
        .await
        .unwrap();
    let t0 = Instant::now();
    wait_until("stepped down", || async { !one.leading() }).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t0.elapsed()
    );
    wait_until("taken back after the intruder's lease expired", || async {
        one.leading()
    })
    .await;
    one.stop().await;
}
