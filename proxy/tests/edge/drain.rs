//! The drain: SIGTERM on a real `tidegate` process with open WebSockets (real clients, real echo
//! backend), and the proxy in-process for what needs its metrics after the stop or a client
//! that writes raw frames.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::frames::{self, close_of};
use crate::support::*;

/// `tidegate proxy --config FILE` as a child process; its addresses come from its JSON start-up
/// line, and every later log line is kept.
struct ProxyProcess {
    child: Child,
    traffic: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _config: tempfile::NamedTempFile,
}

impl ProxyProcess {
    fn start(config: &str) -> ProxyProcess {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["proxy", "--config"])
            .arg(file.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = lines
            .by_ref()
            .map(|l| l.unwrap())
            .find(|l| l.contains("tidegate proxy starting"))
            .expect("the proxy logs its addresses");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|l| kept.lock().unwrap().push(l));
        });
        let json: serde_json::Value = serde_json::from_str(&started).unwrap();
        let addr = |k: &str| json["fields"][k].as_str().unwrap().parse().unwrap();
        ProxyProcess {
            traffic: addr("traffic"),
            admin: addr("admin"),
            child,
            log,
            _config: file,
        }
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits (up to the deadline) for the process to exit; its status and when it was seen.
    async fn exited(&mut self) -> (std::process::ExitStatus, Instant) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, Instant::now());
            }
            assert!(Instant::now() < deadline, "the proxy did not exit");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The fields of the first log line whose message is `message`.
    fn logged(&self, message: &str) -> Option<serde_json::Value> {
        let log = self.log.lock().unwrap();
        log.iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == message).then(|| v["fields"].clone())
        })
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn status(addr: SocketAddr, path: &str) -> u16 {
    let answer = get(addr, path).await;
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_websocket_with_1001_spread_over_half_the_grace_and_exits_early() {
    let backend = Backend::start().await;
    let (delay, grace) = (Duration::from_secs(1), Duration::from_secs(4));
    let mut proxy = ProxyProcess::start(&format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog_format: json\n\
         backends: {{static: [{}]}}\nshutdown_delay: 1s\ngrace_period: 4s\n\
         websocket_close_timeout: 5s\nshutdown_timeout: 2s\n",
        backend.addr
    ));
    let url = format!("ws://{}/chat", proxy.traffic);
    let open = || async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        echo_once(&mut ws, "hello").await;
        ws
    };
    wait_until("ready", || async {
        status(proxy.admin, "/readyz").await == 200
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(open().await);
    }

    proxy.sigterm();
    let sigterm = Instant::now();
    wait_until("/readyz 503", || async {
        status(proxy.admin, "/readyz").await == 503
    })
    .await;
    assert!(sigterm.elapsed() < delay, "/readyz turned 503 at once");
    // Still accepting during shutdown_delay: a new WebSocket works.
    clients.push(open().await);
    assert!(sigterm.elapsed() < delay, "opened within the delay");
    let n = clients.len();
    let closes: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(close_of(ws)))
        .collect();

    let traffic = proxy.traffic;
    wait_until("new connections refused", || async {
        TcpStream::connect(traffic).await.is_err()
    })
    .await;
    assert!(
        sigterm.elapsed() >= delay,
        "refused only after shutdown_delay"
    );
    assert_eq!(status(proxy.admin, "/readyz").await, 503, "admin stays up");

    let mut at = Vec::new();
    for c in closes {
        let (code, when) = c.await.unwrap();
        assert_eq!(code, Some(CloseCode::Away), "every client gets 1001");
        at.push(when.duration_since(sigterm));
    }
    at.sort();
    let (status, exited) = proxy.exited().await;
    assert!(status.success(), "{status}");
    let last_close = sigterm + *at.last().unwrap();
    assert!(exited.duration_since(last_close) < Duration::from_millis(1500));
    assert!(exited.duration_since(sigterm) < delay + grace - Duration::from_millis(800));

    // Spread evenly over grace / 2 = 2 s from the end of the delay: the k-th close near
    // delay + k × 2 s / n.
    let gap = grace.as_secs_f64() / 2.0 / n as f64;
    for (k, t) in at.iter().enumerate() {
        let want = delay.as_secs_f64() + k as f64 * gap;
        let off = t.as_secs_f64() - want;
        assert!(
            (-0.05..0.5).contains(&off),
            "close {k} at {t:?}, due at {want:.2}s: {at:?}"
        );
    }
    wait_until("the backend saw every close", || async {
        backend.stats.open() == 0
    })
    .await;
    let codes = backend.stats.close_codes();
    assert_eq!(
        codes,
        vec![Some(1001); n],
        "masked 1001 to the backend (tungstenite checks)"
    );
    wait_until("drain summary logged", || async {
        proxy.logged("drain done").is_some()
    })
    .await;
    let done = proxy.logged("drain done").unwrap();
    assert_eq!(
        (done["asked"].as_u64(), done["cut"].as_u64()),
        (Some(n as u64), Some(0))
    );
}

/// A WebSocket opened with a raw socket, for frames written by hand.
async fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    frames::upgrade(&mut s).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_in_flight_is_finished_before_the_1001_goes_out() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    (c.grace_period, c.websocket_close_timeout) =
        (Duration::from_secs(10), Duration::from_secs(10));
    let proxy = start_proxy(c);
    let mut client = raw_ws(proxy.traffic_addr).await;
    // A masked binary frame of 64 KiB; the first 1 KiB of its payload now, the rest later.
    let frame = frames::binary_frame(64 * 1024);
    let cut = 14 + 1024;
    frames::write_through(&mut client, &frame[..cut], &backend).await;

    proxy.begin_graceful_stop();
    let shared = Arc::clone(&proxy.handles.proxy);
    wait_until("draining", || async { shared.drain.is_draining() }).await;
    let rest = frames::close_after_frame(&mut client, &frame[cut..])
        .await
        .unwrap_or_default();
    assert!(
        rest.is_empty(),
        "the echo of the big frame came after the close: dropped"
    );
    wait_until("backend closed", || async { backend.stats.open() == 0 }).await;
    assert_eq!(backend.stats.close_codes(), vec![Some(1001)]);
    let started = Instant::now();
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "over without waiting for the grace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_is_cut_at_the_end_of_the_grace_and_counted() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    (c.grace_period, c.websocket_close_timeout) = (Duration::from_secs(2), Duration::from_secs(30));
    let proxy = start_proxy(c);
    let registry = proxy.handles.admin.registry.clone();
    let silent = raw_ws(proxy.traffic_addr).await; // never reads, never answers
    let answering = ws(&proxy).await;
    wait_until("both relayed", || async { backend.stats.open() == 2 }).await;

    let started = Instant::now();
    let closed = tokio::spawn(close_of(answering));
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(closed.await.unwrap().0, Some(CloseCode::Away));
    assert!(
        took >= Duration::from_millis(1900),
        "held until the grace period ended: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    let m = tidegate_proxy::metrics::render(&registry);
    let value = |series: &str| sample(&m, series);
    assert_eq!(
        value("tidegate_shutdown_cut_connections_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value("tidegate_websocket_closes_total{cause=\"shutdown\"}"),
        Some(2.0)
    );
    let ends = "tidegate_connection_duration_seconds_count";
    assert_eq!(value(&format!("{ends}{{end=\"proxy_closed\"}}")), Some(1.0));
    assert_eq!(value(&format!("{ends}{{end=\"cut\"}}")), Some(1.0));
    assert_eq!(value("tidegate_draining"), Some(1.0));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_local_backend_closes_its_websockets_with_1001_when_its_drain_grace_runs_out() {
    use tidegate_proxy::target::ScaleTarget;
    let mut c = config(&[], 10);
    c.websocket_close_timeout = Duration::from_secs(3);
    c.backends.local = Some(tidegate_proxy::config::LocalBackends {
        command: Some(format!(
            "{} echo-backend --listen 127.0.0.1:{{port}}",
            env!("CARGO_BIN_EXE_tidegate")
        )),
        port_range: [32000, 32999],
        drain_grace: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(2),
        initial: 2,
        ..Default::default()
    });
    let proxy = start_proxy(c);
    wait_until("two backends ready", || async {
        state(&proxy).await["totals"]["capacity"] == 20
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(ws(&proxy).await);
    }
    let by_backend = live_by_backend(&proxy).await;
    assert!(
        by_backend.iter().all(|(_, live)| *live == 2),
        "{by_backend:?}"
    );

    let pool = std::sync::Arc::clone(proxy.handles.pool.as_ref().unwrap());
    let drained_at = Instant::now();
    pool.set_desired(1, 1);
    let waits: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(close_of(ws)))
        .collect();
    wait_until("two closed", || async {
        waits.iter().filter(|w| w.is_finished()).count() == 2
    })
    .await;
    wait_until("the emptied backend is removed", || async {
        state(&proxy).await["backends"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(
        state(&proxy).await["totals"]["live"],
        2,
        "the others still open"
    );
    for w in waits {
        if w.is_finished() {
            let (code, at) = w.await.unwrap();
            assert_eq!(code, Some(CloseCode::Away));
            let after = at.duration_since(drained_at);
            assert!(
                after >= Duration::from_secs(1),
                "not before the grace: {after:?}"
            );
        } else {
            w.abort();
        }
    }
    let m = metrics(&proxy).await;
    let closes = "tidegate_websocket_closes_total{cause=\"backend_drained\"}";
    assert_eq!(sample(&m, closes), Some(2.0), "{m}");
    let ends = "tidegate_connection_duration_seconds_count{end=\"proxy_closed\"}";
    assert_eq!(sample(&m, ends), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_on_pingoras_tunnel_cannot_be_sent_a_close_and_are_cut_at_the_end() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    c.websocket_fast_path = false;
    let proxy = start_proxy(c);
    let registry = proxy.handles.admin.registry.clone();
    let mut client = ws(&proxy).await;
    echo_once(&mut client, "through pingora").await;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "held to the grace's end: {took:?}"
    );
    let m = tidegate_proxy::metrics::render(&registry);
    assert_eq!(
        sample(&m, "tidegate_shutdown_cut_connections_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "tidegate_websocket_closes_total{cause=\"shutdown\"}"),
        None
    );
    let next = tokio::time::timeout(DEADLINE, client.next()).await.unwrap();
    assert!(
        !matches!(next, Some(Ok(Message::Close(Some(_))))),
        "no close frame: {next:?}"
    );
}
