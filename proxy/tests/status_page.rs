//! In a real browser, headless Chromium (driven by playwright-core): the status page loads `/`
//! from a proxy running the local-mode loop under load — with a second edge beside it, taking
//! the pool's backends through the peer exchange and half of the load — waits until the charts
//! show data and the cluster view shows the peer, and saves a screenshot; and `https://` then
//! `wss://` through a TLS proxy to the echo backend, Chromium trusting exactly the test
//! certificate's key (`--ignore-certificate-errors-spki-list`, this test only). Needs node,
//! Chromium and playwright-core, which `cargo xtask test` installs; plain `cargo test` skips
//! them as ignored.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use tidegate_proxy::config::{LocalBackends, Peers, ScalerSection};
use tidegate_tools::load::{Endpoint, Population, Profile, population};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node, chromium and playwright-core: run by `cargo xtask test`"]
async fn the_status_page_shows_live_data_in_headless_chromium() {
    let mut c = config(&[], 20);
    c.backends.local = Some(LocalBackends {
        command: Some(format!(
            "{} echo-backend --listen 127.0.0.1:{{port}}",
            env!("CARGO_BIN_EXE_tidegate")
        )),
        port_range: [32000, 32999],
        initial: 2,
        ..LocalBackends::default()
    });
    c.scaler = Some(ScalerSection {
        min_replicas: 2,
        max_replicas: 6,
        boot_time: Duration::from_secs(1),
        ..ScalerSection::default()
    });
    c.peers = Some(Peers::default());
    let proxy = start_proxy(c);
    let mut beside = config(&[], 20);
    beside.backends.from_peers = true;
    beside.peers = Some(Peers {
        static_: vec![proxy.admin_addr],
        ..Peers::default()
    });
    let second = start_proxy(beside);
    wait_until("backends ready on both edges", || async {
        state(&proxy).await["totals"]["capacity"].as_u64() >= Some(20)
            && state(&second).await["totals"]["capacity"].as_u64() >= Some(20)
    })
    .await;
    let load = Population::new(population::Plan {
        target: Endpoint::parse(&format!("ws://{}/", proxy.traffic_addr)).unwrap(),
        profile: Profile::Ramp { peak: 50 },
        period: Duration::from_secs(20),
        duration: None,
        report: false,
    })
    .spread_over([Endpoint::parse(&format!("ws://{}/", second.traffic_addr)).unwrap()]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let load_task = tokio::spawn(async move { load.run(async { drop(stop_rx.await) }).await });

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/status_page.mjs");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let url = format!("http://{}/", proxy.admin_addr);
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(&url)
        .arg(&shot)
        .output()
        .await;
    let out = out.expect("node must be installed (cargo xtask test installs it)");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot too small"
    );
    if let Ok(dest) = std::env::var("TIDEGATE_SCREENSHOT") {
        std::fs::copy(&shot, dest).unwrap();
    }
    stop_tx.send(()).unwrap();
    load_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node, chromium and playwright-core: run by `cargo xtask test`"]
async fn headless_chromium_opens_wss_through_tidegate_to_the_echo_backend() {
    use support::tls::{SecretVolume, TestCa};
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"]);
    let volume = SecretVolume::new(&leaf);
    let echo = Backend::start().await;
    let mut c = config(&[echo.addr], 10);
    c.tls = Some(tidegate_proxy::config::TlsSection {
        cert_file: volume.cert(),
        key_file: volume.key(),
        certificates: Vec::new(),
        listen: None,
    });
    let proxy = start_proxy(c);
    let leaf_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wss-leaf.pem");
    std::fs::write(&leaf_file, &leaf.chain_pem).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/wss.mjs");
    let origin = format!("https://localhost:{}", proxy.traffic_addr.port());
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(&origin)
        .arg(&leaf_file)
        .output()
        .await
        .expect("node must be installed (cargo xtask test installs it)");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("hello from chromium over wss"));
    let m = metrics(&proxy).await;
    let ok = format!(
        "tidegate_upgrades_total{{backend=\"{}\",result=\"ok\"}}",
        echo.addr
    );
    assert_eq!(sample(&m, &ok), Some(1.0), "{m}");
    assert!(sample(&m, "tidegate_tls_handshakes_total{version=\"tls1_3\"}").unwrap_or(0.0) >= 1.0);
}
