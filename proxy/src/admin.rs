//! The admin listener: `/` (the status page), `/metrics` (Prometheus text), `/healthz` (process
//! up), `/readyz` (at least one backend takes new connections, and no drain has started),
//! `/api/v1/state` ([`state`]: JSON counts, the cluster view and the scaler's view),
//! `/api/v1/history` ([`history`]: the last ten minutes, one sample a second), and, with peers,
//! `POST /api/v1/peer/sync` ([`crate::peers::exchange`]).
//!
//! Answers are small and built at request time; each connection carries one request and is
//! closed, and writing the answer is bounded in time, so a stuck scraper cannot hold anything.
//! With peers, the listener keeps serving through a graceful shutdown until this replica has
//! left the exchange.

pub mod history;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::error;

use crate::dataplane::listener::{self, Bound};
use crate::dataplane::{Proxy, head, respond};
use crate::peers::{Peers, exchange};
use crate::scaling::Status;
use history::History;

/// The status page: one self-contained file (no CDN), polling the JSON endpoints every second.
const STATUS_PAGE: &str = include_str!("admin/status.html");

/// Largest admin request head.
const MAX_HEAD: usize = 8 * 1024;

/// What the admin endpoints read.
pub struct Admin {
    /// The data plane: the table, the config, the refusals.
    pub proxy: Arc<Proxy>,
    /// Every component's metrics.
    pub registry: Registry,
    /// The scaler's status, when a scaler runs here.
    pub scaler: Option<Arc<Status>>,
    /// The last ten minutes.
    pub history: Arc<History>,
    /// The peer exchange, when peers are configured.
    pub peers: Option<Arc<Peers>>,
}

/// The admin listener as a pingora background service.
pub struct Listener {
    admin: Arc<Admin>,
    listener: Bound,
}

impl Listener {
    /// A service that will serve `admin` on `listener` once the server runs.
    pub fn new(admin: Arc<Admin>, listener: std::net::TcpListener) -> Self {
        Self {
            admin,
            listener: Bound::new(listener),
        }
    }
}

#[async_trait]
impl BackgroundService for Listener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return error!("admin listener unavailable");
        };
        let errors = self.admin.proxy.metrics.accept_errors.clone();
        // Peers push here until this replica has left the exchange, shutdown or not.
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let peers = self.admin.peers.clone();
        let until = tokio::spawn(async move {
            let _ = shutdown.changed().await;
            if let Some(p) = peers {
                p.wait_left().await;
            }
            let _ = stop.send(true);
        });
        listener::accept_loop(
            listener,
            "admin",
            &errors,
            &mut stopped,
            |_, stream, peer| {
                drop(tokio::spawn(serve(Arc::clone(&self.admin), stream, peer)));
            },
        )
        .await;
        until.abort();
    }
}

/// Serves one admin connection.
pub async fn serve(admin: Arc<Admin>, mut stream: TcpStream, peer: SocketAddr) {
    let timeout = admin.proxy.config.load().request_header_timeout;
    let (head, request) = match head::read_request(&mut stream, MAX_HEAD, timeout).await {
        Ok(read) => read,
        Err(e) => {
            if let Some((code, reason)) = e.status() {
                respond::simple(&mut stream, code, reason, &[], &format!("{e}\n")).await;
            }
            return;
        }
    };
    let path = request.target.split('?').next().unwrap_or_default();
    if let (exchange::PATH, "POST", Some(peers)) = (path, request.method.as_str(), &admin.peers) {
        return exchange::serve(peers, stream, head, peer, timeout).await;
    }
    if request.method != "GET" && request.method != "HEAD" {
        let allow = [("Allow", "GET, HEAD".to_owned())];
        let (code, reason) = (405, "Method Not Allowed");
        return respond::simple(&mut stream, code, reason, &allow, "only GET\n").await;
    }
    let (status, content_type, body) = admin.route(path);
    let head_only = request.method == "HEAD";
    write(&mut stream, status, content_type, &body, head_only).await;
}

impl Admin {
    fn route(&self, path: &str) -> (u16, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        const JSON: &str = "application/json";
        const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
        let json = |v: Result<String, serde_json::Error>| {
            v.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        };
        match path {
            "/metrics" => (200, PROMETHEUS, crate::metrics::render(&self.registry)),
            "/" | "/index.html" => (200, "text/html; charset=utf-8", STATUS_PAGE.to_owned()),
            "/healthz" => (200, TEXT, "ok\n".into()),
            "/readyz" if self.proxy.drain.is_draining() => (503, TEXT, "shutting down\n".into()),
            "/readyz" if self.proxy.table.has_eligible() => (200, TEXT, "ready\n".into()),
            "/readyz" => (503, TEXT, "no backend takes new connections\n".into()),
            "/api/v1/history" => (
                200,
                JSON,
                json(serde_json::to_string(&self.history.samples())),
            ),
            "/api/v1/state" => (200, JSON, json(serde_json::to_string(&self.state()))),
            _ => (
                404,
                TEXT,
                "not found: try /, /metrics, /healthz, /readyz, /api/v1/state, /api/v1/history\n"
                    .into(),
            ),
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A scraper that stops reading must not hold the connection (and its task) forever.
    let _ = tokio::time::timeout(respond::WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        if !head_only {
            stream.write_all(body.as_bytes()).await?;
        }
        stream.shutdown().await
    })
    .await;
}
