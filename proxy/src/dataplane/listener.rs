//! Listening sockets and their accept loops, run as pingora background services.
//!
//! Owning the accept loop (rather than a pingora `Service` endpoint) gives the WebSocket fast
//! path a plain tokio `TcpStream` to wait on without buffers, lets listeners bind port 0 and
//! report the port before the server runs, and still hands plain HTTP to pingora's proxy
//! (`pingora::proxy::http_proxy`, made for custom accept loops). A loop stops accepting when
//! its component stops or, on SIGTERM, when the drain's `shutdown_delay` is over (see
//! [`super::drain`]); open connections are counted until they end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntCounterVec;
use tokio::net::{TcpListener, TcpStream};
use tracing::{error, info};

use super::http::{self, HttpProxy};
use super::{Proxy, inbound, tunnel};

/// Pending connections the kernel queues per listener (bursts of reconnects).
const BACKLOG: i32 = 4096;
/// Pause after a failed accept (e.g. out of descriptors) before the next try.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

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

/// A socket bound before the server runs, taken once by the service that accepts on it.
pub struct Bound(Mutex<Option<std::net::TcpListener>>);

impl Bound {
    /// Wraps a bound listener.
    pub fn new(listener: std::net::TcpListener) -> Self {
        Self(Mutex::new(Some(listener)))
    }

    /// The listener as a tokio socket, the first time only.
    pub fn take(&self) -> Option<TcpListener> {
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        taken.and_then(|l| TcpListener::from_std(l).ok())
    }
}

/// Accepts until `shutdown` fires, handing each connection to `serve`. A failed accept (out of
/// descriptors and the like) keeps what is open running and is retried shortly: the first
/// failure of a streak is logged, every one is counted in `errors{listener=name}`.
pub async fn accept_loop(
    listener: TcpListener,
    name: &'static str,
    errors: &IntCounterVec,
    shutdown: &mut ShutdownWatch,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    info!(listener = name, address = ?listener.local_addr().ok(), "listening");
    let mut failing = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if std::mem::take(&mut failing) {
                        info!(listener = name, "accepting again");
                    }
                    serve(stream, peer);
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        error!(listener = name, error = %e, "accept failed; retrying every 50 ms");
                    }
                    errors.with_label_values(&[name]).inc();
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    info!(listener = name, "stopped accepting");
}

/// The traffic listener: WebSockets and plain HTTP from clients.
pub struct Traffic {
    proxy: Arc<Proxy>,
    listener: Bound,
    http: Arc<HttpProxy>,
}

impl Traffic {
    /// A service that will accept on `listener` once the server runs.
    pub fn new(proxy: Arc<Proxy>, listener: std::net::TcpListener, http: Arc<HttpProxy>) -> Self {
        Self {
            proxy,
            listener: Bound::new(listener),
            http,
        }
    }
}

#[async_trait]
impl BackgroundService for Traffic {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return error!("traffic listener unavailable");
        };
        let errors = self.proxy.metrics.accept_errors.clone();
        // Stops at the end of the drain's shutdown_delay, or when every component stops.
        let mut stop = until_either(shutdown, self.proxy.drain.accepting_stopped());
        let watch = stop.clone();
        accept_loop(listener, "traffic", &errors, &mut stop, |stream, peer| {
            let (proxy, http) = (Arc::clone(&self.proxy), Arc::clone(&self.http));
            let open = proxy.connections.open();
            let shutdown = watch.clone();
            drop(tokio::spawn(async move {
                serve(proxy, http, stream, peer, shutdown).await;
                drop(open);
            }));
        })
        .await;
        // Kept-alive HTTP connections waiting for their next request are closed now; those in
        // a request finish it without keep-alive (they see `stop` fired).
        self.http.cleanup().await;
    }
}

/// A watch that turns true once either of `a` and `b` does.
fn until_either(mut a: ShutdownWatch, mut b: ShutdownWatch) -> ShutdownWatch {
    let (tx, rx) = tokio::sync::watch::channel(*a.borrow() || *b.borrow());
    drop(tokio::spawn(async move {
        tokio::select! {
            _ = a.wait_for(|stop| *stop) => {}
            _ = b.wait_for(|stop| *stop) => {}
            () = tx.closed() => return,
        }
        tx.send_replace(true);
    }));
    rx
}

/// One client connection: read its first head, then the WebSocket fast path or pingora.
async fn serve(
    proxy: Arc<Proxy>,
    http: Arc<HttpProxy>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
) {
    let config = proxy.config.load_full();
    let Some(opened) = inbound::open(&proxy, &config, &mut stream, peer).await else {
        return;
    };
    let inbound::Opened {
        client,
        head,
        request,
    } = opened;
    if request.websocket && config.websocket_fast_path {
        tunnel::serve(&proxy, &config, stream, head, &client).await
    } else {
        http::hand_over(&http, stream, head, &client, &shutdown).await
    }
}
