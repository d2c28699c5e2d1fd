//! The proxy under test: a `tidegate proxy --config FILE` child whose config is a YAML file in
//! the work directory (rewritten in place for reloads), whose bound addresses come from its
//! JSON start-up log line, and whose figures come from its admin API (`/api/v1/state`,
//! `/metrics`). Also: which features the binary supports, asked of `tidegate check-config`.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tidegate_tools::load::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::Child;
use super::{Context, Error};

/// Longest an admin call may take.
const ADMIN_LIMIT: Duration = Duration::from_secs(5);
/// Longest the proxy may take to log its addresses after start.
const START_LIMIT: Duration = Duration::from_secs(20);

/// Features some scenarios need, detected by asking `tidegate check-config` whether it accepts
/// the config field that turns them on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// `tcp_keepalive: {idle, interval, count}` on both legs (issue 10).
    pub tcp_keepalive: bool,
    /// `peers: {static: [...]}` and the leadership fixes that come with it (issue 11).
    pub peers: bool,
}

impl Features {
    /// Asks the binary about each feature.
    pub fn detect(tidegate: &Path, work: &Path) -> Features {
        let accepts = |name: &str, yaml: &str| {
            let file = work.join(format!("feature-{name}.yaml"));
            std::fs::write(&file, yaml).is_ok()
                && Command::new(tidegate)
                    .arg("check-config")
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        };
        Features {
            tcp_keepalive: accepts(
                "tcp_keepalive",
                "tcp_keepalive: {idle: 5s, interval: 1s, count: 3}\n",
            ),
            peers: accepts("peers", "peers: {static: [127.0.0.1:1]}\n"),
        }
    }
}

/// A static backend line of the config.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Its address.
    pub address: SocketAddr,
    /// Its own cap, if not the default one.
    pub cap: Option<u32>,
}

/// The config file of one proxy, rendered as YAML.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Traffic listener (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Admin listener (default `127.0.0.1:0`).
    pub admin: SocketAddr,
    /// `backends.static`; empty leaves the section out (Kubernetes mode sets it in `extra`).
    pub backends: Vec<Backend>,
    /// `max_connections_per_backend`.
    pub cap: u32,
    /// More top-level YAML lines, as written.
    pub extra: Vec<String>,
}

impl ConfigFile {
    /// Port-0 listeners, `backends` with the cap `cap` each.
    pub fn new(backends: &[SocketAddr], cap: u32) -> ConfigFile {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ConfigFile {
            listen: any,
            admin: any,
            backends: backends
                .iter()
                .map(|&address| Backend { address, cap: None })
                .collect(),
            cap,
            extra: Vec::new(),
        }
    }

    /// Adds a top-level YAML line, e.g. `queue_timeout: 0s`.
    pub fn with(mut self, line: impl Into<String>) -> ConfigFile {
        self.extra.push(line.into());
        self
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let mut y = format!(
            "listen: {}\nadmin_listen: {}\nmax_connections_per_backend: {}\ngrace_period: 1s\nshutdown_timeout: 1s\n",
            self.listen, self.admin, self.cap
        );
        if !self.backends.is_empty() {
            y.push_str("backends:\n  static:\n");
            for b in &self.backends {
                match b.cap {
                    Some(cap) => y.push_str(&format!(
                        "    - {{address: {}, max_connections: {cap}}}\n",
                        b.address
                    )),
                    None => y.push_str(&format!("    - {}\n", b.address)),
                }
            }
        }
        for line in &self.extra {
            y.push_str(line);
            y.push('\n');
        }
        y
    }
}

/// `/api/v1/state`, the parts the suite reads.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    /// Every backend in the table.
    pub backends: Vec<BackendRow>,
    /// Sums.
    pub totals: Totals,
    /// The scaler's view, when one runs.
    #[serde(default)]
    pub scaler: Option<ScalerView>,
}

impl State {
    /// The row of `address`, if the table has it.
    pub fn backend(&self, address: SocketAddr) -> Option<&BackendRow> {
        self.backends.iter().find(|b| b.address == address)
    }

    /// Live + pending on `address` (0 if absent).
    pub fn occupied(&self, address: SocketAddr) -> u64 {
        self.backend(address).map_or(0, |b| b.live + b.pending)
    }
}

/// One backend in `/api/v1/state`.
#[derive(Debug, Clone, Deserialize)]
pub struct BackendRow {
    /// Where connections go.
    pub address: SocketAddr,
    /// Live WebSockets (this replica's).
    pub live: u64,
    /// Upgrades waiting for the 101.
    pub pending: u64,
    /// Its cap.
    pub capacity: u64,
    /// Kept out of routing after a failed connect.
    pub ejected: bool,
    /// `ready`, `terminating`, `draining`, `removed`, …
    pub state: String,
    /// Live across every replica (with peers, issue 11).
    #[serde(default)]
    pub cluster_live: Option<u64>,
}

/// `totals` in `/api/v1/state`.
#[derive(Debug, Clone, Deserialize)]
pub struct Totals {
    /// Live WebSockets.
    pub live: u64,
    /// Pending upgrades.
    pub pending: u64,
    /// 503s since start.
    pub rejected: u64,
    /// Capacity of the routable backends.
    pub capacity: u64,
    /// Live across every replica (with peers, issue 11).
    #[serde(default)]
    pub cluster_live: Option<u64>,
}

/// `scaler` in `/api/v1/state`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScalerView {
    /// Whether this instance holds the Lease (or needs none).
    pub leader: bool,
    /// Replicas asked for.
    pub desired_replicas: u32,
}

/// A running proxy. Killed when dropped.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    /// The traffic listener.
    pub traffic: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The config file it watches.
    pub config: PathBuf,
}

impl Proxy {
    /// Writes `config` to `<work>/<name>.yaml` and starts `tidegate proxy` on it, under an
    /// open-file limit of `nofile` if given; returns once it has logged its addresses.
    pub async fn start(
        ctx: &Context,
        name: &str,
        config: &ConfigFile,
        nofile: Option<u64>,
    ) -> Result<Proxy, Error> {
        let path = ctx.work.join(format!("{name}.yaml"));
        write_atomically(&path, &config.render())?;
        let mut cmd = Command::new("sh");
        let limit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        cmd.arg("-c")
            .arg(format!(
                "{limit}exec \"$0\" proxy --config \"$1\" --log-format json"
            ))
            .arg(&ctx.tidegate)
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let log = ctx.work.join(format!("{name}.log"));
        let mut child = Child::spawn(name, cmd, None)?;
        let stderr = child
            .take_stderr()
            .ok_or_else(|| Error::Child(format!("{name}: no stderr")))?;
        let (traffic, admin) = addresses(name, stderr, log).await?;
        Ok(Proxy {
            child,
            traffic,
            admin,
            config: path,
        })
    }

    /// The proxy's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Kills the proxy (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.running()
    }

    /// The WebSocket URL of the traffic listener.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("ws://{}/soak", self.traffic))
            .unwrap_or_else(|e| unreachable!("an IP:PORT URL parses: {e}"))
    }

    /// Replaces the config file in one rename, as a reload.
    pub fn publish(&self, config: &str) -> Result<(), Error> {
        write_atomically(&self.config, config)
    }

    /// `/api/v1/state`.
    pub async fn state(&self) -> Result<State, Error> {
        let body = get(self.admin, "/api/v1/state").await?;
        serde_json::from_str(&body).map_err(|e| Error::Admin {
            addr: self.admin,
            path: "/api/v1/state",
            reason: e.to_string(),
        })
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics, Error> {
        get(self.admin, "/metrics").await.map(Metrics)
    }
}

/// A scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one series, e.g. `tidegate_config_reloads_total{result="ok"}`; absent: 0.
    pub fn get(&self, series: &str) -> f64 {
        self.find(series).unwrap_or(0.0)
    }

    /// The value of one series, if present.
    pub fn find(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// Writes `text` to `path` through a temporary file and a rename: a watcher never sees half.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(Error::io(format!("writing {}", path.display())))
}

/// Waits for the start-up line on the proxy's stderr, then copies the rest to `log`.
async fn addresses(
    name: &str,
    stderr: std::process::ChildStderr,
    log: PathBuf,
) -> Result<(SocketAddr, SocketAddr), Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || copy_log(stderr, &log, tx));
    let line = match tokio::time::timeout(START_LIMIT, rx).await {
        Ok(Ok(line)) => line,
        Ok(Err(_)) => return Err(Error::Child(format!("{name} exited during start-up"))),
        Err(_) => return Err(Error::Timeout(format!("{name} to start"))),
    };
    let json: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| Error::Child(format!("{name}: start-up line {line:?}: {e}")))?;
    let addr = |key: &str| {
        json["fields"][key]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Error::Child(format!("{name}: no {key} address in {line:?}")))
    };
    Ok((addr("traffic")?, addr("admin")?))
}

fn copy_log(
    stderr: std::process::ChildStderr,
    log: &Path,
    started: tokio::sync::oneshot::Sender<String>,
) {
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .ok();
    let mut started = Some(started);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if line.contains("tidegate proxy starting")
            && let Some(tx) = started.take()
        {
            let _ = tx.send(line);
        }
    }
}

/// `GET path` on the admin listener; the body of a 200.
pub async fn get(addr: SocketAddr, path: &'static str) -> Result<String, Error> {
    let fail = |reason: String| Error::Admin { addr, path, reason };
    let call = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ADMIN_LIMIT, call)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no response head".into()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(fail(head.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(body.to_owned())
}
