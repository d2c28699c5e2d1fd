//! EndpointSlice discovery through the whole proxy: eligibility rules, updates within 1 s,
//! and connections that outlive their endpoint.

use std::time::Duration;

use tidegate_common::BackendState;

use crate::kube_support::*;
use crate::support::{self, Backend, echo_once, wait_until, ws};
use crate::{config, state_of, time_until};

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn discovery_follows_endpointslices_with_the_eligibility_rules() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "discovery").await;
    let (a, b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    put_slice(&admin, &ns, slice("echo", "s-a", a.addr, "pod-a", READY)).await;
    put_slice(
        &admin,
        &ns,
        slice("echo", "s-b", b.addr, "pod-b", TERMINATING),
    )
    .await;
    put_slice(
        &admin,
        &ns,
        slice("echo", "s-c", c.addr, "pod-c", NOT_SERVING),
    )
    .await;
    // The whole proxy, with discovery as a pingora background service building its own client.
    let proxy = support::start_proxy(config(&ns, ADMIN, false));
    let table = &proxy.handles.proxy.table;
    time_until(table, a.addr, Some(BackendState::Ready)).await;
    assert_eq!(state_of(table, b.addr), Some(BackendState::Terminating));
    assert_eq!(
        state_of(table, c.addr),
        None,
        "serving: false is never routed"
    );

    let mut on_a = vec![ws(&proxy).await, ws(&proxy).await];
    wait_until("both on the ready backend", || async {
        a.stats.open() == 2
    })
    .await;
    assert_eq!((b.stats.accepted(), c.stats.accepted()), (0, 0));

    put_slice(
        &admin,
        &ns,
        slice("echo", "s-a", a.addr, "pod-a", TERMINATING),
    )
    .await;
    let took = time_until(table, a.addr, Some(BackendState::Terminating)).await;
    assert!(took < Duration::from_secs(1), "update seen after {took:?}");
    let _on_b = ws(&proxy).await;
    wait_until(
        "no ready left: the least-loaded terminating one",
        || async { b.stats.open() == 1 },
    )
    .await;

    put_slice(&admin, &ns, slice("echo", "s-c", c.addr, "pod-c", READY)).await;
    let took = time_until(table, c.addr, Some(BackendState::Ready)).await;
    assert!(took < Duration::from_secs(1), "update seen after {took:?}");
    let _on_c = ws(&proxy).await;
    wait_until("ready beats terminating again", || async {
        c.stats.open() == 1
    })
    .await;

    delete_slice(&admin, &ns, "s-a").await;
    let took = time_until(table, a.addr, Some(BackendState::Removed)).await;
    assert!(took < Duration::from_secs(1), "delete seen after {took:?}");
    for w in &mut on_a {
        echo_once(w, "still here").await;
    }
    assert_eq!(
        table.get(a.addr).unwrap().live(),
        2,
        "a gone endpoint keeps its connections"
    );
    drop(on_a);
    time_until(table, a.addr, None).await;
}
