//! The admin listener: `/` (the status page), `/metrics` (Prometheus text), `/healthz` (process
//! up), `/readyz` (at least one backend takes new connections), `/api/v1/state` (JSON counts and
//! the scaler's view) and `/api/v1/history` (the last ten minutes, one sample a second).
//!
//! Answers are small and built from the backend table at request time; each connection carries
//! one request and is closed, so a stuck scraper cannot hold anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tidegate_common::BackendLoad;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::head;
use crate::respond;
use crate::scale::StatusView;
use crate::shared::Shared;

/// The status page: one self-contained file (no CDN), polling the JSON endpoints every second.
const STATUS_PAGE: &str = include_str!("admin/status.html");

/// Largest admin request head.
const MAX_HEAD: usize = 8 * 1024;

/// The body of `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct State {
    /// Every backend in the table, removed-but-not-empty ones included.
    pub backends: Vec<BackendLoad>,
    /// Sums over all backends.
    pub totals: Totals,
    /// The scaler's view, when a scaler runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaler: Option<StatusView>,
}

/// Sums in `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Live WebSockets.
    pub live: u64,
    /// Upgrades routed and waiting for the backend's 101.
    pub pending: u64,
    /// Upgrades refused with 503 since start.
    pub rejected: u64,
    /// Upgrades waiting in the queue now.
    pub waiting: usize,
    /// Capacity of the backends that take new connections.
    pub capacity: u64,
}

/// The state as `/api/v1/state` reports it.
pub fn state(shared: &Shared) -> State {
    let load = shared.table.load_snapshot(Instant::now());
    let totals = Totals {
        live: load.total_live(),
        pending: load.total_pending(),
        rejected: shared.metrics.rejected_total(),
        waiting: load.waiting,
        capacity: load.routable_capacity(),
    };
    State {
        backends: load.backends,
        totals,
        scaler: shared.scaler.view(),
    }
}

/// Serves one admin connection.
pub async fn serve(shared: Arc<Shared>, mut stream: TcpStream, _peer: SocketAddr) {
    let timeout = shared.config.load().request_header_timeout;
    let info = match head::read_request(&mut stream, MAX_HEAD, timeout).await {
        Ok((_, info)) => info,
        Err(e) => {
            if let Some((code, reason)) = e.status() {
                respond::simple(&mut stream, code, reason, &[], &format!("{e}\n")).await;
            }
            return;
        }
    };
    let path = info.target.split('?').next().unwrap_or_default();
    if info.method != "GET" && info.method != "HEAD" {
        return respond::simple(
            &mut stream,
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD".into())],
            "only GET\n",
        )
        .await;
    }
    let (status, content_type, body) = route(&shared, path);
    let head_only = info.method == "HEAD";
    write(&mut stream, status, content_type, &body, head_only).await;
}

fn route(shared: &Shared, path: &str) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    match path {
        "/metrics" => {
            let load = shared.table.load_snapshot(Instant::now());
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                shared.metrics.render(&load),
            )
        }
        "/" | "/index.html" => (200, "text/html; charset=utf-8", STATUS_PAGE.to_owned()),
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" if shared.table.has_eligible() => (200, TEXT, "ready\n".into()),
        "/readyz" => (503, TEXT, "no backend takes new connections\n".into()),
        "/api/v1/history" => {
            let history = shared.scaler.history();
            (
                200,
                JSON,
                serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
            )
        }
        "/api/v1/state" => {
            let body = serde_json::to_string(&state(shared))
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            (200, JSON, body)
        }
        _ => (
            404,
            TEXT,
            "not found: try /, /metrics, /healthz, /readyz, /api/v1/state, /api/v1/history\n"
                .into(),
        ),
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
    let _ = stream.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

/// Samples the counts once a second for `/api/v1/history` (what the status page draws).
pub struct HistoryService(pub Arc<Shared>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for HistoryService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let load = self.0.table.load_snapshot(Instant::now());
            self.0.scaler.sample(&load, self.0.metrics.rejected_total());
        }
    }
}
