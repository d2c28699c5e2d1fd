//! Retry, backoff and conflict paths of the scale writer against a scripted API server.

use std::time::Duration;

use ::kube::Api;
use tokio::time::Instant;

use super::*;
use crate::kube::fixtures::{self, ApiServer};

/// An error counter of its own (not registered anywhere).
fn errors() -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(prometheus::Opts::new("errors", "e"), &["kind"]).unwrap()
}

fn writer() -> (Writer, ApiServer) {
    let (client, server) = fixtures::client();
    let api = Api::namespaced(client, "demo");
    let w = Writer::new(api, "echo", errors())
        .with_backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(8)));
    (w, server)
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
    let lows: Vec<_> = (0..6).map(|_| b.next_delay(0.0)).collect();
    let secs = |s: f64| Duration::from_secs_f64(s);
    assert_eq!(
        lows,
        [
            secs(0.5),
            secs(1.0),
            secs(2.0),
            secs(4.0),
            secs(4.0),
            secs(4.0)
        ]
    );
    b.reset();
    assert_eq!(b.next_delay(1.0), secs(1.0));
    assert_eq!(b.next_delay(0.5), secs(1.5));
}

#[tokio::test(start_paused = true)]
async fn conflicts_and_server_errors_are_retried_with_backoff_until_accepted() {
    let (mut w, mut server) = writer();
    let script = tokio::spawn(async move {
        let first = server.fail(409).await;
        let t1 = Instant::now();
        server.fail(503).await;
        let t2 = Instant::now();
        let last = server.answer(200, fixtures::scale("echo", 4)).await;
        (first, last, t1, t2, Instant::now())
    });
    let out = w.write(4, std::future::pending()).await.unwrap();
    assert_eq!(out, Outcome::Written(4));
    let (first, last, t1, t2, t3) = script.await.unwrap();
    assert_eq!(first.method, http::Method::PATCH);
    assert_eq!(
        first.path,
        "/apis/apps/v1/namespaces/demo/deployments/echo/scale"
    );
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(first.body, serde_json::json!({"spec": {"replicas": 4}}));
    assert_eq!(last.body, first.body, "the retry writes the same value");
    let (d1, d2) = (t2 - t1, t3 - t2);
    assert!(
        d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
        "{d1:?}"
    );
    assert!(
        d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2),
        "{d2:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_newer_decision_supersedes_a_write_waiting_to_retry() {
    let (mut w, mut server) = writer();
    let (tx, mut rx) = tokio::sync::watch::channel(4);
    let script = tokio::spawn(async move {
        server.fail(500).await;
        tx.send_replace(6);
        server
    });
    let newer = async move {
        let _ = rx.changed().await;
    };
    assert_eq!(w.write(4, newer).await.unwrap(), Outcome::Superseded);
    let mut server = script.await.unwrap();
    // The writer did not try 4 again: its next request is the new value.
    let next = tokio::spawn(async move { server.answer(200, fixtures::scale("echo", 6)).await });
    assert_eq!(
        w.write(6, std::future::pending()).await.unwrap(),
        Outcome::Written(6)
    );
    assert_eq!(next.await.unwrap().body["spec"]["replicas"], 6);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_returned_at_once_and_counted() {
    let (client, mut server) = fixtures::client();
    let errors = errors();
    let mut w = Writer::new(Api::namespaced(client, "demo"), "echo", errors.clone());
    let script = tokio::spawn(async move {
        server.fail(409).await;
        server.fail(403).await;
    });
    let err = w.write(3, std::future::pending()).await.unwrap_err();
    script.await.unwrap();
    assert_eq!(err.code(), Some(403));
    let count = |k| errors.with_label_values(&[k]).get();
    assert_eq!((count("conflict"), count("forbidden")), (1, 1));
}
