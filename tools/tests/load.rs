//! Black-box runs of every load scenario against the echo backend on 127.0.0.1 port 0.

use std::time::Duration;
use tidegate_tools::load::{
    Error,
    endpoint::{self, Endpoint},
    handshakes, idle, latency, throughput,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Starts an echo server; it stops when the returned sender is dropped.
async fn echo() -> (Endpoint, oneshot::Sender<()>) {
    let (listener, stats) = tidegate_tools::echo::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind port 0");
    let url = format!("ws://{}/", listener.local_addr().expect("bound address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tidegate_tools::echo::serve(listener, stats, async {
        let _ = stopped.await;
    }));
    (Endpoint::parse(&url).expect("loopback URL"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_each_cumulative_step() {
    let (target, _stop) = echo().await;
    let config = idle::Config {
        steps: vec![5, 20],
        pid: std::process::id(),
        hold: Duration::from_millis(10),
        concurrency: 8,
        warmup: 2,
    };
    let mut reports = Vec::new();
    idle::run(&target, &config, |r| reports.push(r))
        .await
        .unwrap();
    let steps: Vec<usize> = reports.iter().map(|r| r.connections).collect();
    assert_eq!(steps, [5, 20]);
    assert!(
        reports
            .iter()
            .all(|r| r.rss_before_kb > 0 && r.rss_after_kb > 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_stop_at_the_count_cap() {
    let (target, _stop) = echo().await;
    let config = handshakes::Config {
        duration: Duration::from_secs(10),
        concurrency: 4,
        max: 50,
        pid: Some(std::process::id()),
    };
    let report = handshakes::run(&target, &config).await.unwrap();
    assert_eq!((report.handshakes, report.errors), (50, 0));
    assert!(report.cpu_ms_per_1k.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_gets_every_echo_back() {
    let (target, _stop) = echo().await;
    let config = latency::Config {
        connections: 4,
        rate: 200.0,
        duration: Duration::from_millis(300),
        size: 32,
    };
    let report = latency::run(&target, &config).await.unwrap();
    assert!(report.sent >= 40, "{report:?}");
    assert_eq!(report.sent, report.received);
    assert!(
        0.0 < report.p50_us && report.p50_us <= report.p99_us && report.p99_us <= report.max_us
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_echoes_the_uneven_share() {
    let (target, _stop) = echo().await;
    let config = throughput::Config {
        connections: 2,
        size: 4096,
        messages: 101,
        window: 8,
        pid: None,
    };
    let report = throughput::run(&target, &config).await.unwrap();
    assert_eq!(report.messages, 101);
    assert!(report.msgs_per_s > 0.0 && report.cpu_s_per_million.is_none());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    let err = Endpoint::parse(&url)
        .unwrap()
        .connect(endpoint::small_config())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}
