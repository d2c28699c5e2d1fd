//! One scale-down step against a scripted API server: the order of the calls is the contract
//! (read, annotate the victim once, patch the scale, record an Event).

use std::net::SocketAddr;

use serde_json::json;
use tidegate_common::{BackendState, BackendTable};

use super::*;
use crate::discovery::{Catalog, Condition, Endpoint};
use crate::kube::fixtures::{self, ApiServer};
use crate::target::ScaleTarget;

fn setup() -> (Actuator, Apis, ApiServer, Arc<BackendTable>) {
    let table = Arc::new(BackendTable::new());
    let catalog = Arc::new(Catalog::new(Arc::clone(&table), 10));
    catalog.replace(
        (1..=3)
            .map(|i| Endpoint {
                address: SocketAddr::from(([10, 0, 0, i], 9000)),
                pod: Some(format!("echo-{i}")),
                condition: Condition::Ready,
                capacity: None,
            })
            .collect(),
    );
    let deployment = DeploymentRef {
        namespace: "demo".into(),
        name: "echo".into(),
    };
    let target = Arc::new(Target::new(catalog, 1, 10, 0));
    let registry = prometheus::Registry::new();
    let client = KubeClientConfig::default();
    let service = Actuator::new(target, deployment, client, None, &registry).unwrap();
    let (client, server) = fixtures::client();
    let apis = service.apis(client);
    (service, apis, server, table)
}

fn deployment(replicas: i32, paused: bool) -> serde_json::Value {
    let annotations = if paused {
        json!({PAUSED_ANNOTATION: "true"})
    } else {
        json!({})
    };
    json!({"metadata": {"name": "echo", "namespace": "demo", "uid": "u-1", "annotations": annotations},
           "spec": {"replicas": replicas, "selector": {}, "template": {}}})
}

#[tokio::test]
async fn scale_down_drains_annotates_once_then_patches_and_records_an_event() {
    let (service, apis, mut server, table) = setup();
    let target = Arc::clone(&service.target);
    target.set_desired(2, 2);
    let mut orders = target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let script = tokio::spawn(async move {
        let get = server.answer(200, deployment(3, false)).await;
        let pod = server
            .answer(200, json!({"metadata": {"name": "echo-1"}}))
            .await;
        let scale = server.answer(200, fixtures::scale("echo", 2)).await;
        let event = server
            .answer(
                201,
                json!({"metadata": {"name": "e"}, "involvedObject": {}}),
            )
            .await;
        let again = server.answer(200, deployment(2, false)).await;
        (server, [get, pod, scale, event, again])
    });
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    let (_server, [get, pod, scale, event, again]) = script.await.unwrap();
    assert_eq!(get.path, "/apis/apps/v1/namespaces/demo/deployments/echo");
    assert_eq!(pod.method, http::Method::PATCH);
    let victim = pod.path.rsplit('/').next().unwrap().to_owned();
    assert!(
        pod.path.starts_with("/api/v1/namespaces/demo/pods/echo-"),
        "{}",
        pod.path
    );
    assert_eq!(
        pod.body,
        json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: "-1000"}}})
    );
    assert_eq!(
        scale.path,
        "/apis/apps/v1/namespaces/demo/deployments/echo/scale"
    );
    assert_eq!(scale.body, json!({"spec": {"replicas": 2}}));
    assert_eq!(event.body["reason"], "Scaled");
    assert_eq!(
        again.method,
        http::Method::GET,
        "the second step only reads: annotated once, scale already 2"
    );
    let drained: Vec<_> = table
        .backends()
        .iter()
        .filter(|b| b.state() == BackendState::Draining)
        .map(|b| b.address())
        .collect();
    assert_eq!(drained.len(), 1);
    let i: u8 = victim.trim_start_matches("echo-").parse().unwrap();
    assert_eq!(
        drained[0],
        SocketAddr::from(([10, 0, 0, i], 9000)),
        "the annotated pod is the drained one"
    );
    assert_eq!(target.writes(), 1);
}

#[tokio::test]
async fn a_paused_deployment_is_left_alone() {
    let (service, apis, mut server, table) = setup();
    service.target.set_desired(8, 8);
    let mut orders = service.target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let script = tokio::spawn(async move { server.answer(200, deployment(3, true)).await });
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    script.await.unwrap();
    assert!(service.target.view().paused);
    assert_eq!(service.target.writes(), 0);
    assert!(
        table
            .backends()
            .iter()
            .all(|b| b.state() == BackendState::Ready)
    );
}

#[tokio::test]
async fn a_refused_scale_is_reported_once_not_every_second() {
    let (service, apis, mut server, _table) = setup();
    service.target.set_desired(4, 4);
    let mut orders = service.target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let script = tokio::spawn(async move {
        server.answer(200, deployment(3, false)).await;
        server.fail(403).await;
        let event = server
            .answer(
                201,
                json!({"metadata": {"name": "e"}, "involvedObject": {}}),
            )
            .await;
        server.answer(200, deployment(3, false)).await;
        let again = server.fail(403).await;
        (event, again, server) // kept open: an unexpected request would wait, not fail
    });
    let first = service.reconcile(&apis, &mut writer, &mut orders).await;
    assert_eq!(first.unwrap_err().code(), Some(403));
    let second = service.reconcile(&apis, &mut writer, &mut orders);
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), second).await;
    let second = second.expect("no second Event is recorded");
    assert_eq!(second.unwrap_err().code(), Some(403));
    let (event, again, _server) = script.await.unwrap();
    assert_eq!(event.body["reason"], "ScaleFailed");
    assert_eq!(event.body["type"], "Warning");
    assert!(again.path.ends_with("/scale"));
}

/// An actuator over the three endpoints of [`setup`] that leads while `leading` says so.
fn leader(leading: &watch::Sender<bool>, peers: bool) -> (Actuator, Apis, ApiServer) {
    let (plain, _, _, _) = setup();
    let registry = prometheus::Registry::new();
    let client = KubeClientConfig::default();
    let deployment = plain.deployment.clone();
    let service = Actuator::new(
        Arc::clone(&plain.target),
        deployment,
        client,
        Some(leading.subscribe()),
        &registry,
    )
    .unwrap()
    .following_peers(peers);
    let (client, server) = fixtures::client();
    let apis = service.apis(client);
    (service, apis, server)
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 9000))
}

#[tokio::test]
async fn a_marked_pod_back_in_service_loses_its_mark() {
    let (service, apis, mut server, table) = setup();
    let target = Arc::clone(&service.target);
    target.catalog().set_draining([addr(1)].into());
    assert!(
        target.first_annotation("echo-1"),
        "marked by an earlier scale-down"
    );
    target.set_desired(3, 3); // demand came back: all three serve
    let mut orders = target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let script = tokio::spawn(async move {
        server.answer(200, deployment(3, false)).await;
        let unmark = server
            .answer(200, json!({"metadata": {"name": "echo-1"}}))
            .await;
        (server, unmark)
    });
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    let (_server, unmark) = script.await.unwrap();
    assert_eq!(unmark.path, "/api/v1/namespaces/demo/pods/echo-1");
    assert_eq!(
        unmark.body,
        json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: null}}})
    );
    assert!(!target.is_marked("echo-1"));
    assert_eq!(state(&table, 1), Some(BackendState::Ready));
    assert_eq!(target.writes(), 0, "already 3 replicas");
}

fn state(table: &BackendTable, i: u8) -> Option<BackendState> {
    table.get(addr(i)).map(|b| b.state())
}

#[tokio::test]
async fn a_new_leader_unmarks_what_its_predecessor_drained_and_it_does_not_remove() {
    let (leading, _) = watch::channel(false);
    let (service, apis, mut server) = leader(&leading, true);
    let target = Arc::clone(&service.target);
    // As a follower it applied the old leader's drain mark on echo-2 (through the peers).
    target.catalog().set_draining([addr(2)].into());
    target.set_desired(3, 3);
    leading.send_replace(true);
    let mut orders = target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let script = tokio::spawn(async move {
        server.answer(200, deployment(3, false)).await;
        let unmark = server
            .answer(200, json!({"metadata": {"name": "echo-2"}}))
            .await;
        (server, unmark)
    });
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    let (_server, unmark) = script.await.unwrap();
    assert_eq!(unmark.path, "/api/v1/namespaces/demo/pods/echo-2");
    assert!(target.marked().is_empty());
}

#[tokio::test]
async fn a_follower_with_peers_keeps_the_leaders_drain_marks_one_without_clears_them() {
    for (peers, kept) in [(true, true), (false, false)] {
        let (leading, _) = watch::channel(false);
        let (service, apis, mut server) = leader(&leading, peers);
        let target = Arc::clone(&service.target);
        target.catalog().set_draining([addr(3)].into());
        let mut orders = target.order.subscribe();
        let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
        let script = tokio::spawn(async move {
            server.answer(200, deployment(3, false)).await;
            server
        });
        service
            .reconcile(&apis, &mut writer, &mut orders)
            .await
            .unwrap();
        let _server = script.await.unwrap();
        let table = target.catalog().table();
        let draining = state(table, 3) == Some(BackendState::Draining);
        assert_eq!(draining, kept, "peers: {peers}");
    }
}

#[tokio::test]
async fn a_leader_whose_lease_lapses_while_planning_writes_no_scale() {
    let (leading, _) = watch::channel(true);
    let (service, apis, mut server) = leader(&leading, true);
    let target = Arc::clone(&service.target);
    target.set_desired(2, 2);
    let mut orders = target.order.subscribe();
    let mut writer = Writer::new(apis.deployments.clone(), "echo", service.errors.clone());
    let lapse = leading.clone();
    let script = tokio::spawn(async move {
        server.answer(200, deployment(3, false)).await;
        let (annotate, held) = server.hold().await;
        lapse.send_replace(false); // the Lease lapses while the victim is being marked
        held.send_response(
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(::kube::client::Body::from(
                    serde_json::to_vec(&json!({"metadata": {"name": "echo-1"}})).unwrap(),
                ))
                .unwrap(),
        );
        (server, annotate)
    });
    service
        .reconcile(&apis, &mut writer, &mut orders)
        .await
        .unwrap();
    let (_server, annotate) = script.await.unwrap();
    assert_eq!(annotate.method, http::Method::PATCH);
    assert_eq!(target.writes(), 0, "no scale write after the lapse");
}

#[tokio::test]
async fn a_rollout_that_costs_capacity_is_reported_once_per_setting() {
    let (service, apis, mut server, _table) = setup();
    let default = |replicas| deployment(replicas, false);
    let mut safe = deployment(8, false);
    safe["spec"]["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}});
    let created = || json!({"metadata": {"name": "e"}, "involvedObject": {}});
    let script = tokio::spawn(async move {
        let mut calls = Vec::new();
        // 8 replicas at the default: reported; again, and through 3 (costs nothing) and back
        // to 8: not again; a safe setting, then the default again: reported again.
        calls.push(server.answer(200, default(8)).await);
        calls.push(server.answer(201, created()).await);
        for replicas in [8, 3, 8] {
            calls.push(server.answer(200, default(replicas)).await);
        }
        calls.push(server.answer(200, safe).await);
        calls.push(server.answer(200, default(8)).await);
        calls.push(server.answer(201, created()).await);
        (server, calls)
    });
    // Each step: the read, then the Event it queued, as the loop posts it after the step.
    let step = || async {
        service.refresh(&apis).await.unwrap();
        service.record_queued(&apis).await;
    };
    step().await;
    assert_eq!(
        service.rollout_unavailable.get(),
        2,
        "25 % of 8, rounded down"
    );
    for want in [2, 0, 2, 0] {
        step().await;
        assert_eq!(service.rollout_unavailable.get(), want);
    }
    step().await;
    let (_server, calls) = script.await.unwrap();
    let methods: Vec<_> = calls.iter().map(|c| c.method.clone()).collect();
    assert_eq!(
        methods,
        [
            http::Method::GET,
            http::Method::POST,
            http::Method::GET,
            http::Method::GET,
            http::Method::GET,
            http::Method::GET,
            http::Method::GET,
            http::Method::POST
        ],
        "an Event after the first read and after the setting came back, no other"
    );
    let event = &calls[1];
    assert_eq!(event.path, "/api/v1/namespaces/demo/events");
    assert_eq!(event.body["reason"], "RolloutUnsafe");
    assert_eq!(event.body["type"], "Warning");
    let message = event.body["message"].as_str().unwrap();
    assert!(message.contains("takes 2 of its 8 pods"), "{message}");
    assert!(
        message.contains("maxUnavailable 25% (the default)"),
        "{message}"
    );
}
