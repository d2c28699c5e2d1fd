//! The two listeners as pingora background services with accept loops of their own.
//!
//! Owning the accept loop (rather than a pingora `Service` endpoint) gives the WebSocket fast
//! path a plain tokio `TcpStream` to wait on without buffers, lets listeners bind port 0 and
//! report the port before the server runs, and still hands plain HTTP to pingora's proxy
//! (`pingora::proxy::http_proxy`, made for custom accept loops). Both loops stop accepting when
//! pingora's shutdown watch fires; open connections then have the grace period.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info};

use crate::head;
use crate::http::{self, HttpFallback};
use crate::respond;
use crate::shared::Shared;
use crate::tunnel;

/// Pending connections the kernel queues per listener (bursts of reconnects).
const BACKLOG: i32 = 4096;

/// Binds a listening socket now (so port 0 resolves before the server starts).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Which listener a service runs.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// Client traffic: WebSockets and plain HTTP.
    Traffic,
    /// `/metrics`, `/healthz`, `/readyz`, `/api/v1/state`.
    Admin,
}

impl Role {
    /// The `listener` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Role::Traffic => "traffic",
            Role::Admin => "admin",
        }
    }
}

/// An accept loop on a socket bound earlier.
pub struct ListenerService {
    role: Role,
    shared: Arc<Shared>,
    listener: Mutex<Option<std::net::TcpListener>>,
    http: Arc<pingora::proxy::HttpProxy<HttpFallback>>,
}

impl ListenerService {
    /// A service that will accept on `listener` once the server runs.
    pub fn new(
        role: Role,
        shared: Arc<Shared>,
        listener: std::net::TcpListener,
        http: Arc<pingora::proxy::HttpProxy<HttpFallback>>,
    ) -> Self {
        Self {
            role,
            shared,
            listener: Mutex::new(Some(listener)),
            http,
        }
    }
}

#[async_trait]
impl BackgroundService for ListenerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(listener) = taken.and_then(|l| TcpListener::from_std(l).ok()) else {
            return error!(role = ?self.role, "listener unavailable");
        };
        info!(role = ?self.role, address = ?listener.local_addr().ok(), "listening");
        let mut failing = false;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if std::mem::take(&mut failing) {
                            info!(role = ?self.role, "accepting again");
                        }
                        self.spawn(stream, peer, shutdown.clone());
                    }
                    // Out of descriptors and similar: keep serving what is open, retry shortly;
                    // log the first failure of a streak, count every one.
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            error!(role = ?self.role, error = %e, "accept failed; retrying every 50 ms");
                        }
                        self.shared.metrics.accept_errors.with_label_values(&[self.role.label()]).inc();
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        info!(role = ?self.role, "stopped accepting");
        if matches!(self.role, Role::Traffic) {
            self.http.cleanup().await;
        }
    }
}

impl ListenerService {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, shutdown: ShutdownWatch) {
        let shared = Arc::clone(&self.shared);
        match self.role {
            Role::Admin => drop(tokio::spawn(crate::admin::serve(shared, stream, peer))),
            Role::Traffic => {
                let http = Arc::clone(&self.http);
                drop(tokio::spawn(async move {
                    serve_traffic(shared, http, stream, peer, shutdown).await
                }));
            }
        }
    }
}

/// One client connection: read its first head, then the WebSocket fast path or pingora.
async fn serve_traffic(
    shared: Arc<Shared>,
    http: Arc<pingora::proxy::HttpProxy<HttpFallback>>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
) {
    let _ = stream.set_nodelay(true);
    let config = shared.config.load_full();
    match head::read_request(
        &mut stream,
        config.max_request_header_bytes,
        config.request_header_timeout,
    )
    .await
    {
        Ok((head, info)) if info.websocket && config.websocket_fast_path => {
            tunnel::serve(&shared, &config, stream, head, peer).await
        }
        Ok((head, _)) => http::hand_over(&http, stream, head, &shutdown).await,
        Err(e) => {
            debug!(%peer, error = %e, "bad request head");
            shared
                .metrics
                .bad_requests
                .with_label_values(&[e.metric_label()])
                .inc();
            if let Some((code, reason)) = e.status() {
                respond::simple(&mut stream, code, reason, &[], &format!("{e}\n")).await;
            }
        }
    }
}
