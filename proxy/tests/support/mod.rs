//! Test harness: a real proxy on 127.0.0.1 port 0 in front of real WebSocket echo backends,
//! with real WebSocket clients; helpers wait on conditions with deadlines, never sleep.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod recording;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tidegate_proxy::config::{Config, StaticBackend};
use tidegate_proxy::server::{App, Running};
use tidegate_tools::echo::{self, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod edge_process;
pub mod frames;
pub mod tls;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any wait in a test may take before it fails (generous for a loaded 2-core box).
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Backend {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start() -> Backend {
        let (listener, stats) = echo::bind(loopback0()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(echo::serve(
            listener,
            Arc::clone(&stats),
            std::future::pending(),
        ));
        Backend { addr, stats, task }
    }

    /// Stops accepting (existing connections keep running).
    pub fn stop_accepting(&self) {
        self.task.abort();
    }
}

pub fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A config on port 0 with the given backends and cap; grace period short for tests.
pub fn config(backends: &[SocketAddr], cap: u32) -> Config {
    let mut c = Config {
        listen: loopback0(),
        admin_listen: loopback0(),
        max_connections_per_backend: cap,
        grace_period: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(1),
        shutdown_delay: Duration::ZERO,
        ..Config::default()
    };
    c.backends.static_ = backends
        .iter()
        .map(|&address| StaticBackend {
            address,
            max_connections: None,
        })
        .collect();
    c
}

pub fn start_proxy(config: Config) -> Running {
    tidegate_common::telemetry::init_with_default(Default::default(), "warn");
    App::build(config).unwrap().spawn()
}

pub async fn ws(proxy: &Running) -> Ws {
    try_ws(proxy).await.unwrap()
}

pub async fn try_ws(proxy: &Running) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    try_ws_to(proxy.traffic_addr).await
}

/// A WebSocket through the proxy listening at `traffic`.
pub async fn try_ws_to(traffic: SocketAddr) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{traffic}/chat");
    let (ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timed out")?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

pub async fn echo_once<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text(text));
}

/// A raw HTTP/1.1 exchange; returns the whole response as text (the server closes).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("no answer");
    String::from_utf8_lossy(&out).into_owned()
}

/// The upgrade request of a WebSocket client, with `headers` (each ending in `\r\n`) added.
pub fn upgrade_request(headers: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// Writes `request` on a new connection and reads the response head; the socket stays open.
pub async fn open_raw(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

/// Reads one response head (through the blank line) byte by byte, so nothing after it is
/// consumed.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut byte))
            .await
            .expect("no answer")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A plain request on a new connection, answered; the connection stays open for the next one.
pub async fn kept_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 3];
    s.read_exact(&mut body).await.unwrap();
    s
}

pub async fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Sends an upgrade on `client`, waits until it is queued, closes `client` (drops it), and
/// waits until the proxy has seen it leave the queue; returns `left_in_queue` then.
pub async fn leave_queue<S: tokio::io::AsyncWrite + Unpin>(proxy: &Running, mut client: S) -> f64 {
    let request = upgrade_request("Connection: Upgrade\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    wait_until("the upgrade is queued", || async {
        state(proxy).await["totals"]["waiting"] == 1
    })
    .await;
    drop(client);
    wait_until("the departed client leaves the queue", || async {
        state(proxy).await["totals"]["waiting"] == 0
    })
    .await;
    let m = metrics(proxy).await;
    sample(&m, "tidegate_bad_requests_total{reason=\"left_in_queue\"}").unwrap_or(0.0)
}

pub async fn state(proxy: &Running) -> Value {
    serde_json::from_str(body(&get(proxy.admin_addr, "/api/v1/state").await)).unwrap()
}

pub async fn metrics(proxy: &Running) -> String {
    body(&get(proxy.admin_addr, "/metrics").await).to_owned()
}

/// The value of one sample line in the Prometheus text, e.g. `name{backend="..."}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `tidegate_upgrades_total{result}` summed over `backends`.
pub fn upgrades_total(metrics: &str, backends: &[SocketAddr], result: &str) -> f64 {
    backends
        .iter()
        .filter_map(|a| {
            sample(
                metrics,
                &format!("tidegate_upgrades_total{{backend=\"{a}\",result=\"{result}\"}}"),
            )
        })
        .sum()
}

/// Live count per backend address, from `/api/v1/state`.
pub async fn live_by_backend(proxy: &Running) -> Vec<(String, u64)> {
    let s = state(proxy).await;
    s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_owned(),
                b["live"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Polls `check` until it returns true or the deadline passes (then panics with `what`).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts the proxy's live counts equal what the backends see, backend by backend, in both
/// `/api/v1/state` and `/metrics`.
pub async fn assert_counts_match(proxy: &Running, backends: &[&Backend]) {
    for b in backends {
        let truth = b.stats.open() as u64;
        let addr = b.addr.to_string();
        wait_until(&format!("{addr} live == {truth}"), || async {
            live_by_backend(proxy)
                .await
                .iter()
                .any(|(a, l)| *a == addr && *l == truth)
        })
        .await;
        let m = metrics(proxy).await;
        let series = format!("tidegate_backend_connections{{backend=\"{addr}\"}}");
        assert_eq!(
            sample(&m, &series),
            Some(truth as f64),
            "{series} in /metrics"
        );
    }
}

/// This process's TCP sockets connected to `peer`, as duplicated descriptors (`pidfd_getfd` on
/// ourselves), so tests can read back the options the in-process proxy set on its own sockets.
pub fn sockets_with_peer(peer: SocketAddr) -> Vec<std::os::fd::OwnedFd> {
    sockets_where(|_, to| to == Some(peer))
}

/// This process's sockets from `local` to `peer`: the proxy's end of one client connection is
/// the one from the address the client connected to. The peer alone is not enough there: the
/// kernel may give the proxy's connect to a backend the same ephemeral port as a client's.
pub fn sockets_between(local: SocketAddr, peer: SocketAddr) -> Vec<std::os::fd::OwnedFd> {
    sockets_where(|from, to| from == Some(local) && to == Some(peer))
}

/// The proxy's end of the plain WebSocket `ws` (its accepted socket), as a duplicated descriptor.
pub fn proxy_end_of(ws: &Ws) -> std::os::fd::OwnedFd {
    let MaybeTlsStream::Plain(client) = ws.get_ref() else {
        unreachable!("plain ws://")
    };
    let mut accepted = sockets_between(client.peer_addr().unwrap(), client.local_addr().unwrap());
    assert_eq!(accepted.len(), 1, "the proxy's client-side socket");
    accepted.remove(0)
}

fn sockets_where(
    keep: impl Fn(Option<SocketAddr>, Option<SocketAddr>) -> bool,
) -> Vec<std::os::fd::OwnedFd> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let me = pidfd_open(getpid(), PidfdFlags::empty()).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        if !link.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&me, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let s = socket2::SockRef::from(&fd);
        let (from, to) = (
            s.local_addr().ok().and_then(|a| a.as_socket()),
            s.peer_addr().ok().and_then(|a| a.as_socket()),
        );
        if keep(from, to) {
            found.push(fd);
        }
    }
    found
}
