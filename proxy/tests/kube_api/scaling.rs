//! Scaling the Deployment: drain-first with deletion costs, the pause annotation, and the whole
//! proxy scaling on real WebSocket load.

use std::time::{Duration, Instant};

use tidegate_common::BackendState;
use tidegate_proxy::target::ScaleTarget;

use tidegate_proxy::target::deployment::{DELETION_COST_ANNOTATION, PAUSED_ANNOTATION};

use crate::kube_support::*;
use crate::lease::{holder, lease};
use crate::support::{self, Backend, wait_until, ws};
use crate::{config, events, scaled_events, state_of, time_until, with_lease};

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn scaling_patches_the_deployment_drain_first_with_deletion_costs() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "scale").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let names = ["echo-a", "echo-b", "echo-c", "echo-d"];
    for (b, name) in backends.iter().zip(names).take(2) {
        create_pod(&admin, &ns, name, "echo").await;
        put_slice(&admin, &ns, slice("echo", name, b.addr, name, READY)).await;
    }
    let run = Running::start(
        config(&ns, ADMIN, true),
        &["kube-discovery", "kube-deployment"],
    );
    let table = run.table();
    time_until(table, backends[1].addr, Some(BackendState::Ready)).await;

    run.target().set_desired(4, 4);
    wait_until("spec.replicas 4", || async {
        replicas(&admin, &ns, "echo").await == 4
    })
    .await;
    wait_until("a Scaled event", || async {
        !scaled_events(&admin, &ns).await.is_empty()
    })
    .await;
    // The API server defaults the strategy to maxUnavailable 25 %: one pod of four.
    wait_until("a RolloutUnsafe event", || async {
        !events(&admin, &ns, "RolloutUnsafe").await.is_empty()
    })
    .await;
    let unsafe_rollout = events(&admin, &ns, "RolloutUnsafe").await;
    assert!(
        unsafe_rollout[0].contains("takes 1 of its 4 pods")
            && unsafe_rollout[0].contains("maxUnavailable 25%"),
        "{unsafe_rollout:?}"
    );
    for (b, name) in backends.iter().zip(names).skip(2) {
        create_pod(&admin, &ns, name, "echo").await;
        put_slice(&admin, &ns, slice("echo", name, b.addr, name, READY)).await;
    }
    time_until(table, backends[3].addr, Some(BackendState::Ready)).await;

    // Three connections each on a and b; c and d are empty and must be the ones removed.
    let exclude = [backends[2].addr, backends[3].addr];
    let held: Vec<_> = (0..6)
        .map(|_| table.try_reserve(Instant::now(), &exclude).unwrap())
        .collect();
    run.target().set_desired(2, 2);
    wait_until("spec.replicas 2", || async {
        replicas(&admin, &ns, "echo").await == 2
    })
    .await;
    for (b, name) in backends.iter().zip(names) {
        let victim = name == "echo-c" || name == "echo-d";
        let state = if victim {
            BackendState::Draining
        } else {
            BackendState::Ready
        };
        assert_eq!(state_of(table, b.addr), Some(state), "{name}");
        let cost = pod_annotation(&admin, &ns, name, DELETION_COST_ANNOTATION).await;
        assert_eq!(cost.as_deref(), victim.then_some("-1000"), "{name}");
    }
    let events = scaled_events(&admin, &ns).await;
    assert!(
        events.iter().any(|m| m.contains("down from 4 to 2")),
        "{events:?}"
    );

    run.target().set_desired(50, 50);
    wait_until("clamped to max_replicas 6", || async {
        replicas(&admin, &ns, "echo").await == 6
    })
    .await;
    time_until(table, backends[2].addr, Some(BackendState::Ready)).await;
    assert_eq!(run.target().writes(), 3);
    drop(held);
    run.stop().await;
}

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn a_paused_deployment_is_left_alone() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "paused").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    annotate_deployment(&admin, &ns, "echo", PAUSED_ANNOTATION, Some("true")).await;
    let b = Backend::start().await;
    put_slice(&admin, &ns, slice("echo", "s-a", b.addr, "pod-a", READY)).await;
    let run = Running::start(
        config(&ns, ADMIN, true),
        &["kube-discovery", "kube-deployment"],
    );
    run.target().set_desired(5, 5);
    wait_until("the pause is seen", || async { run.target().view().paused }).await;
    let reads = run.target().reads();
    wait_until("two more steps", || async {
        run.target().reads() >= reads + 2
    })
    .await;
    assert_eq!(replicas(&admin, &ns, "echo").await, 2);
    assert_eq!(run.target().writes(), 0);

    annotate_deployment(&admin, &ns, "echo", PAUSED_ANNOTATION, None).await;
    wait_until("scaled once unpaused", || async {
        replicas(&admin, &ns, "echo").await == 5
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn the_whole_proxy_scales_the_deployment_on_real_load_and_reports_it() {
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "e2e").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    let (a, b) = (Backend::start().await, Backend::start().await);
    for (be, name) in [(&a, "echo-a"), (&b, "echo-b")] {
        create_pod(&admin, &ns, name, "echo").await;
        put_slice(&admin, &ns, slice("echo", name, be.addr, name, READY)).await;
    }
    let mut c = with_lease(config(&ns, ADMIN, true), &ns, "e2e");
    let section = c.scaler.as_mut().unwrap();
    section.min_replicas = 2;
    section.boot_time = Duration::from_secs(1);
    section.policy.surge_hold = Duration::from_secs(2);
    section.policy.scale_down_window = Duration::from_secs(3);
    c.validate().unwrap();
    let proxy = support::start_proxy(c);
    wait_until("leader, with both backends", || async {
        let s = support::state(&proxy).await;
        s["scaler"]["leader"] == true && s["totals"]["capacity"] == 20
    })
    .await;

    // 19 of 20 slots taken over two seconds: the forecast runs past capacity.
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(ws(&proxy).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until("the Deployment scaled up", || async {
        replicas(&admin, &ns, "echo").await > 2
    })
    .await;
    let patched = replicas(&admin, &ns, "echo").await;
    let s = support::state(&proxy).await;
    assert_eq!(s["scaler"]["leader"], true);
    assert_eq!(s["scaler"]["ready_replicas"], 2, "{s}");
    assert!(
        s["scaler"]["desired_replicas"].as_u64().unwrap() >= 3,
        "{s}"
    );
    assert!(
        s["scaler"]["forecast_connections"].as_f64().is_some(),
        "{s}"
    );
    let m = support::metrics(&proxy).await;
    let up = support::sample(&m, "tidegate_scaler_decisions_total{direction=\"up\"}");
    assert!(up >= Some(1.0), "{m}");
    let desired = support::sample(&m, "tidegate_scaler_desired_replicas").unwrap();
    assert!(desired >= 3.0, "{desired}");
    assert!(patched <= 6, "never above max_replicas: {patched}");
    assert!(
        !m.contains("tidegate_scaler_errors_total{"),
        "no errors: {m}"
    );
    assert!(!scaled_events(&admin, &ns).await.is_empty());
    drop(held);
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    assert_eq!(
        holder(&lease(&admin, &ns).await),
        None,
        "the lease is released on stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn a_drained_pod_past_its_drain_grace_has_its_websockets_closed_with_1001_then_goes() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "grace").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    let backends = [Backend::start().await, Backend::start().await];
    for (b, name) in backends.iter().zip(["echo-a", "echo-b"]) {
        create_pod(&admin, &ns, name, "echo").await;
        put_slice(&admin, &ns, slice("echo", name, b.addr, name, READY)).await;
    }
    let mut c = config(&ns, ADMIN, true);
    c.backends.kubernetes.as_mut().unwrap().drain_grace = Some(Duration::from_secs(1));
    let run = Running::start(c, &["kube-discovery", "kube-deployment", "traffic"]);
    let table = run.table();
    for b in &backends {
        time_until(table, b.addr, Some(BackendState::Ready)).await;
    }
    let url = format!("ws://{}/chat", run.traffic_addr);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        support::echo_once(&mut ws, "hi").await;
        clients.push(ws);
    }
    assert!(
        backends.iter().all(|b| b.stats.open() == 1),
        "one on each pod"
    );

    let drained_at = Instant::now();
    run.target().set_desired(1, 1);
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Close(frame) = m {
                        return (frame.map(|f| f.code), Instant::now());
                    }
                }
                (None, Instant::now())
            })
        })
        .collect();
    wait_until("one client closed", || async {
        waits.iter().filter(|w| w.is_finished()).count() == 1
    })
    .await;
    wait_until("spec.replicas 1", || async {
        replicas(&admin, &ns, "echo").await == 1
    })
    .await;
    let mut kept = 0;
    for w in waits {
        if w.is_finished() {
            let (code, at) = w.await.unwrap();
            assert_eq!(code, Some(CloseCode::Away));
            assert!(
                at.duration_since(drained_at) >= Duration::from_secs(1),
                "not before the grace"
            );
        } else {
            kept += 1;
            w.abort();
        }
    }
    assert_eq!(kept, 1, "the serving pod's client stays");
    let closed: Vec<_> = backends.iter().map(|b| b.stats.close_codes()).collect();
    assert!(
        closed.contains(&vec![Some(1001)]) && closed.contains(&vec![]),
        "{closed:?}"
    );
    let series = "tidegate_websocket_closes_total{cause=\"backend_drained\"}";
    assert_eq!(run.metric(series), Some(1.0));
    run.stop().await;
}
