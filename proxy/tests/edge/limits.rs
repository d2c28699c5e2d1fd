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
    _config: tempfile::TempDir,
}

impl LimitedProxy {
    fn start(nofile: u32, backend: SocketAddr) -> LimitedProxy {
        LimitedProxy::with_config(nofile, backend, "")
    }

    /// As [`LimitedProxy::start`], with `yaml` as the config file under the flags.
    fn with_config(nofile: u32, backend: SocketAddr, yaml: &str) -> LimitedProxy {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, yaml).unwrap();
        let script = format!(
            "ulimit -n {nofile} && exec \"$0\" proxy --config {} --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
             --backend {backend} --max-connections-per-backend 1000 --queue-timeout 0s --log-format json",
            file.display()
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
            _config: dir,
        }
    }

    /// Descriptors the process has open now below `limit` (descriptors it inherited above the
    /// limit, such as a jobserver pipe, take no room under it).
    fn open_fds(&self, limit: u32) -> u32 {
        let dir = format!("/proc/{}/fd", self.child.id());
        let numbers = std::fs::read_dir(dir).unwrap().flatten();
        let numbers = numbers.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
        numbers.filter(|&n| n < limit).count() as u32
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_hits_the_descriptor_limit_ejects_no_backend_on_either_path() {
    const LIMIT: u32 = 48;
    let backend = Backend::start().await;
    for fast_path in [true, false] {
        let yaml = format!("websocket_fast_path: {fast_path}\n");
        let proxy = LimitedProxy::with_config(LIMIT, backend.addr, &yaml);
        let free = || LIMIT - proxy.open_fds(LIMIT);
        // The proxy opens its runtimes' descriptors as it starts: settle on one WebSocket first.
        let mut held = vec![try_open(proxy.traffic).await.expect("a first WebSocket")];
        // Fill up until one or two descriptors are left (a WebSocket takes two).
        while free() >= 3 {
            let before = proxy.open_fds(LIMIT);
            held.push(try_open(proxy.traffic).await.expect("room for this one"));
            // At least: on a loaded machine one of the proxy's runtimes may still be starting
            // (its epoll and eventfd open late); the next `free()` counts them either way.
            wait_until("both sockets of the WebSocket are open", || async {
                proxy.open_fds(LIMIT) >= before + 2
            })
            .await;
        }
        // Exactly one left: an idle connection takes the other (it waits for its head).
        let mut idle = None;
        if free() == 2 {
            idle = Some(tokio::net::TcpStream::connect(proxy.traffic).await.unwrap());
            wait_until("the idle connection is accepted", || async { free() == 1 }).await;
        }
        // This upgrade is accepted into the last descriptor; its backend connect hits EMFILE.
        let addr = proxy.traffic;
        let (_s, head) =
            open_raw(addr, upgrade_request("Connection: Upgrade\r\n").as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 503"),
            "fast path {fast_path}: {head}"
        );
        assert!(
            head.contains("Retry-After: "),
            "fast path {fast_path}: {head}"
        );
        drop(idle);
        drop(held.pop());
        let m = scrape(proxy.admin).await;
        let series = "tidegate_rejected_connections_total{reason=\"out_of_descriptors\"}";
        assert_eq!(sample(&m, series), Some(1.0), "fast path {fast_path}");
        let failures = format!(
            "tidegate_backend_connect_failures_total{{backend=\"{}\"}}",
            backend.addr
        );
        assert_eq!(
            sample(&m, &failures),
            None,
            "fast path {fast_path}: backend blamed"
        );
        let state = get(proxy.admin, "/api/v1/state").await;
        assert!(
            state.contains("\"ejected\":false"),
            "fast path {fast_path}: {state}"
        );
        let mut again = try_open(proxy.traffic).await.expect("served again");
        echo_once(&mut again, "the backend was never ejected").await;
    }
}
