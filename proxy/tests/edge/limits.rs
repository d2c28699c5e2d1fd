//! Running out of file descriptors: a proxy process started with a tiny `ulimit -n` keeps its
//! open WebSockets working, counts failed accepts, refuses what it cannot serve without ejecting
//! a healthy backend, and recovers — with exact counts — once descriptors free up.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// `tidegate proxy` in a shell with a low open-file limit; its bound addresses come from its
/// JSON start-up log line.
struct LimitedProxy {
    child: Child,
    traffic: SocketAddr,
    admin: SocketAddr,
}

impl LimitedProxy {
    fn start(nofile: u32, backend: SocketAddr) -> LimitedProxy {
        let script = format!(
            "ulimit -n {nofile} && exec \"$0\" proxy --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
             --backend {backend} --max-connections-per-backend 1000 --queue-timeout 0s --log-format json"
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_tidegate")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let started = lines
            .by_ref()
            .map(|l| l.unwrap())
            .find(|l| l.contains("tidegate proxy starting"))
            .expect("the proxy logs its addresses");
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let json: serde_json::Value = serde_json::from_str(&started).unwrap();
        let addr = |k: &str| json["fields"][k].as_str().unwrap().parse().unwrap();
        LimitedProxy {
            traffic: addr("traffic"),
            admin: addr("admin"),
            child,
        }
    }
}

impl Drop for LimitedProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn try_open(addr: SocketAddr) -> Option<Ws> {
    let url = format!("ws://{addr}/");
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(url),
    );
    match attempt.await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

async fn scrape(admin: SocketAddr) -> String {
    let answer = get(admin, "/metrics").await;
    answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_is_survived_counted_and_recovered_from() {
    let backend = Backend::start().await;
    let proxy = LimitedProxy::start(64, backend.addr);

    // Open WebSockets until the proxy can take no more (each costs it 2 descriptors).
    let mut open = Vec::new();
    let mut failures = 0;
    while failures < 3 && open.len() < 60 {
        match try_open(proxy.traffic).await {
            Some(ws) => open.push(ws),
            None => failures += 1,
        }
    }
    assert!(
        !open.is_empty() && open.len() < 60,
        "the limit must bite: {} opened",
        open.len()
    );
    // Every WebSocket that got through still works while the proxy is out of descriptors.
    for (i, ws) in open.iter_mut().enumerate() {
        echo_once(ws, &format!("still alive {i}")).await;
    }
    let held = open.len();
    drop(open.drain(held / 2..));

    // With descriptors free again the admin listener answers, and the counts are exact.
    wait_until("counts exact after recovery", || async {
        let m = scrape(proxy.admin).await;
        let live = sample(
            &m,
            &format!(
                "tidegate_backend_connections{{backend=\"{}\"}}",
                backend.addr
            ),
        );
        live == Some((held / 2) as f64) && backend.stats.open() == held / 2
    })
    .await;
    let m = scrape(proxy.admin).await;
    let accept_errors =
        sample(&m, "tidegate_accept_errors_total{listener=\"traffic\"}").unwrap_or(0.0);
    let no_fd_503 = sample(
        &m,
        "tidegate_rejected_connections_total{reason=\"out_of_descriptors\"}",
    )
    .unwrap_or(0.0);
    eprintln!("held {held}; accept errors {accept_errors}; 503 out_of_descriptors {no_fd_503}");
    assert!(
        accept_errors + no_fd_503 >= 1.0,
        "exhaustion must be counted:\n{m}"
    );
    let failures_for_backend = sample(
        &m,
        &format!(
            "tidegate_backend_connect_failures_total{{backend=\"{}\"}}",
            backend.addr
        ),
    );
    assert_eq!(
        failures_for_backend, None,
        "a healthy backend must not be blamed for the proxy's limit"
    );

    // And new WebSockets are served again.
    let mut again = try_open(proxy.traffic).await.expect("the proxy recovers");
    echo_once(&mut again, "recovered").await;
}
