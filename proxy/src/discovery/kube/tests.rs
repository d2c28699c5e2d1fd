//! Eligibility rules and the slice → endpoint folding.

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use tidegate_common::{BackendState, BackendTable};

use super::*;

/// An endpoint as (ip, ready, serving, terminating).
type Ep<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

fn slice(port: (&str, i32), eps: &[Ep<'_>]) -> Arc<EndpointSlice> {
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .enumerate()
        .map(|(i, (ip, ready, serving, terminating))| {
            serde_json::json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": format!("pod-{i}-{ip}")},
            })
        })
        .collect();
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "addressType": "IPv4",
            "ports": [{"name": port.0, "port": port.1}],
            "endpoints": endpoints,
        }))
        .unwrap(),
    )
}

#[test]
fn conditions_fold_with_the_api_defaults() {
    let c = |ready, serving, terminating| {
        condition(Some(&EndpointConditions {
            ready,
            serving,
            terminating,
        }))
    };
    assert_eq!(condition(None), Condition::Ready);
    assert_eq!(c(Some(true), Some(true), Some(false)), Condition::Ready);
    assert_eq!(c(None, None, None), Condition::Ready);
    assert_eq!(
        c(Some(false), Some(true), Some(true)),
        Condition::Terminating
    );
    assert_eq!(c(Some(false), Some(false), Some(true)), Condition::Stopping);
    assert_eq!(c(Some(false), None, None), Condition::NotReady);
    assert_eq!(
        c(Some(false), Some(false), Some(false)),
        Condition::NotReady
    );
}

#[test]
fn endpoints_take_the_named_port_and_the_best_duplicate() {
    let a = slice(
        ("ws", 9000),
        &[
            ("10.0.0.1", Some(true), Some(true), Some(false)),
            ("10.0.0.2", Some(false), Some(true), Some(true)),
        ],
    );
    let b = slice(
        ("ws", 9000),
        &[("10.0.0.2", Some(true), Some(true), Some(false))],
    );
    let other = slice(("http", 8080), &[("10.0.0.3", Some(true), None, None)]);
    let eps = endpoints(&[a, b, other], &PortRef::Name("ws".into()));
    assert_eq!(eps.len(), 2);
    assert!(
        eps.iter()
            .all(|e| e.condition == Condition::Ready && e.address.port() == 9000)
    );
    assert!(eps[0].pod.as_deref().unwrap().starts_with("pod-0"));
    let by_number = slice(
        ("http", 8080),
        &[
            ("10.0.0.3", None, None, None),
            ("not-an-ip", None, None, None),
        ],
    );
    let eps = endpoints(&[by_number], &PortRef::Number(7000));
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].address, "10.0.0.3:7000".parse().unwrap());
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(start_paused = true)]
async fn watch_errors_keep_the_last_endpoints_and_are_retried() {
    use crate::kube::fixtures;
    let (client, mut server) = fixtures::client();
    let table = Arc::new(BackendTable::new());
    let source = KubernetesBackends {
        drain_grace: None,
        namespace: "demo".into(),
        service: "echo".into(),
        port: PortRef::Name("ws".into()),
    };
    let catalog = Arc::new(Catalog::new(Arc::clone(&table), 5));
    let registry = prometheus::Registry::new();
    let service =
        Arc::new(Watch::new(source, KubeClientConfig::default(), catalog, &registry).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watch = Arc::clone(&service);
    let task = tokio::spawn(async move { watch.run(client, rx).await });
    let json =
        |ip| serde_json::to_value(&*slice(("ws", 9000), &[(ip, Some(true), None, None)])).unwrap();
    let list = server
        .answer(
            200,
            serde_json::json!({"metadata": {"resourceVersion": "10"}, "items": [json("10.0.0.1")]}),
        )
        .await;
    assert_eq!(
        list.path,
        "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices"
    );
    assert!(
        list.query
            .contains("labelSelector=kubernetes.io%2Fservice-name%3Decho"),
        "{}",
        list.query
    );
    let first: SocketAddr = "10.0.0.1:9000".parse().unwrap();
    until("the listed endpoint", || table.get(first).is_some()).await;

    let watch = server.fail(500).await;
    assert!(watch.query.contains("watch=true"), "{}", watch.query);
    let errors = || service.errors("watch");
    until("the error is counted", || errors() == 1).await;
    assert_eq!(
        table.get(first).map(|b| b.state()),
        Some(BackendState::Ready),
        "kept while failing"
    );

    let mut object = json("10.0.0.2");
    object["metadata"]["resourceVersion"] = "11".into();
    object["metadata"]["name"] = "s2".into();
    let added = serde_json::json!({"type": "ADDED", "object": object});
    let retry = server.answer(200, added).await;
    assert!(
        retry.query.contains("watch=true"),
        "retried after a backoff: {}",
        retry.query
    );
    let second: SocketAddr = "10.0.0.2:9000".parse().unwrap();
    until("the watched endpoint", || table.get(second).is_some()).await;
    assert!(table.get(first).is_some());
    stop.send_replace(true);
    task.await.unwrap();
}
