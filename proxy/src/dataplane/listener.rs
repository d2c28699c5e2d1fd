//! Listening sockets and their accept loops, run as pingora background services.
//!
//! Owning the accept loop (rather than a pingora `Service` endpoint) gives the WebSocket fast
//! path a plain tokio `TcpStream` to wait on without buffers, lets listeners bind port 0 and
//! report the port before the server runs, and still hands plain HTTP to pingora's proxy
//! (`pingora::proxy::http_proxy`, made for custom accept loops). A loop stops accepting when
//! its component stops or, on SIGTERM, when the drain's `shutdown_delay` is over (see
//! [`super::drain`]); open connections are counted until they end.
//!
//! The traffic address is bound once per worker thread with `SO_REUSEPORT`: the kernel spreads
//! new connections across the sockets by their 4-tuple hash and each has an accept loop of its
//! own, so no single loop bounds the rate of upgrades (architecture.md, "Every core").

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::Either;
use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntCounterVec;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info};

use super::connections::Open;
use super::http::{self, HttpProxy};
use super::inherited::Inherited;
use super::transport::Transport;
use super::tunnel::{self, Tunnel};
use super::turns::AcceptTurns;
use super::{Proxy, inbound, relay};
use crate::config::Config;
use crate::tls;

/// Pending connections the kernel queues per listener (bursts of reconnects).
const BACKLOG: i32 = 4096;
/// Pause after a failed accept (e.g. out of descriptors) before the next try.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// How often an accept loop wakes with nothing to do. tokio's time driver writes its eventfd
/// (and wakes the worker's park) whenever a timer is registered that is due before the wake it
/// last planned, even while a worker is running (tokio issue #5207); with no timer pending, that
/// is every new connection's first deadline, about one write and one futex wake per upgrade.
/// This tick keeps a planned wake at most this far off, so the deadlines of a connection (a
/// second or more unless configured shorter) never need one: two idle wake-ups a second per
/// loop, against 1.7 system calls fewer per upgrade (benches/README.md, "Syscalls per upgrade").
const WAKE_TICK: Duration = Duration::from_millis(500);

/// Binds a listening socket now (so port 0 resolves before the server starts).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_one(addr, false)
}

/// Binds `count` listening sockets on one address with `SO_REUSEPORT` (port 0 resolves on the
/// first; the others join its port). One socket is bound like [`bind`], without the option.
pub fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if count <= 1 {
        return Ok(vec![bind(addr)?]);
    }
    let first = bind_one(addr, true)?;
    let port = first.local_addr()?.port();
    let shared = SocketAddr::new(addr.ip(), port);
    let mut group = vec![first];
    for _ in 1..count {
        group.push(bind_one(shared, true)?);
    }
    Ok(group)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
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

/// Accepts until `shutdown` fires, handing each connection to `serve` and letting other tasks
/// run after every few ([`AcceptTurns`]). A failed accept (out of
/// descriptors and the like) keeps what is open running and is retried shortly: the first
/// failure of a streak is logged, every one is counted in `errors{listener=name}`.
pub async fn accept_loop(
    listener: TcpListener,
    name: &'static str,
    errors: &IntCounterVec,
    shutdown: &mut ShutdownWatch,
    mut serve: impl FnMut(&TcpListener, TcpStream, SocketAddr),
) {
    info!(listener = name, address = ?listener.local_addr().ok(), "listening");
    let mut failing = false;
    let mut turns = AcceptTurns::default();
    let mut wake = tokio::time::interval(WAKE_TICK);
    wake.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Nothing to do: the tick only keeps the time driver's next wake near (WAKE_TICK).
            _ = wake.tick() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if std::mem::take(&mut failing) {
                        info!(listener = name, "accepting again");
                    }
                    serve(&listener, stream, peer);
                    turns.accepted().await;
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

/// A traffic listener: WebSockets and plain HTTP from clients, over TCP or, with an acceptor,
/// over TLS; one accept loop per socket of its group.
pub struct Traffic {
    name: &'static str,
    proxy: Arc<Proxy>,
    listeners: Vec<Bound>,
    http: Arc<HttpProxy>,
    tls: Option<Arc<tls::Acceptor>>,
}

impl Traffic {
    /// A service that will accept on each of `listeners` (one address, bound once per worker)
    /// once the server runs; with `tls`, every connection is a TLS handshake first. `name`
    /// labels its metrics (`traffic`, `traffic_tls`).
    pub fn new(
        name: &'static str,
        proxy: Arc<Proxy>,
        listeners: Vec<std::net::TcpListener>,
        http: Arc<HttpProxy>,
        tls: Option<Arc<tls::Acceptor>>,
    ) -> Self {
        Self {
            name,
            proxy,
            listeners: listeners.into_iter().map(Bound::new).collect(),
            http,
            tls,
        }
    }
}

#[async_trait]
impl BackgroundService for Traffic {
    async fn start(&self, shutdown: ShutdownWatch) {
        // Stops at the end of the drain's shutdown_delay, or when every component stops.
        let stop = until_either(shutdown, self.proxy.drain.accepting_stopped());
        debug!(listener = self.name, bytes = ?Footprint::of_this_build(), "per-connection futures");
        let loops: Vec<_> = self
            .listeners
            .iter()
            .filter_map(Bound::take)
            .map(|listener| {
                let (proxy, http) = (Arc::clone(&self.proxy), Arc::clone(&self.http));
                let (name, tls) = (self.name, self.tls.clone());
                // A task each: the runtime's workers run the loops side by side.
                tokio::spawn(accept_traffic(
                    name,
                    listener,
                    proxy,
                    http,
                    tls,
                    stop.clone(),
                ))
            })
            .collect();
        if loops.is_empty() {
            return error!(listener = self.name, "traffic listener unavailable");
        }
        for accepting in loops {
            if let Err(e) = accepting.await {
                error!(listener = self.name, error = %e, "traffic accept loop ended abnormally");
            }
        }
        // Kept-alive HTTP connections waiting for their next request are closed now; those in
        // a request finish it without keep-alive (they see `stop` fired).
        self.http.cleanup().await;
    }
}

/// One traffic socket's accept loop: a task per connection, counted while it is open, with
/// the running config's socket options handed down by the listener ([`Inherited`]).
async fn accept_traffic(
    name: &'static str,
    listener: TcpListener,
    proxy: Arc<Proxy>,
    http: Arc<HttpProxy>,
    tls: Option<Arc<tls::Acceptor>>,
    mut stop: ShutdownWatch,
) {
    let errors = proxy.metrics.accept_errors.clone();
    let watch = stop.clone();
    let mut inherited = Inherited::default();
    accept_loop(
        listener,
        name,
        &errors,
        &mut stop,
        |listener, stream, peer| {
            inherited.accepted(listener, &stream, proxy.config.load().tcp_keepalive);
            let (proxy, http) = (Arc::clone(&proxy), Arc::clone(&http));
            let open = proxy.connections.open();
            let (shutdown, tls) = (watch.clone(), tls.clone());
            drop(tokio::spawn(connection(
                proxy, http, stream, peer, shutdown, tls, open,
            )));
        },
    )
    .await;
}

/// The task of one accepted connection, counted open until it ends.
///
/// Everything up to an upgraded WebSocket — PROXY header, TLS handshake, first head, routing,
/// the handshake with the backend — runs in a boxed future ([`accept`]) that is freed when it
/// hands over the [`Tunnel`]; the task then relays it. A future holds room for its largest
/// state, so without the box every idle WebSocket's task would carry room for all of those
/// (`docs/architecture.md`, "No buffer while idle"). Not an `async fn`, so that the task holds the
/// box and not also the moved-from arguments.
fn connection(
    proxy: Arc<Proxy>,
    http: Arc<HttpProxy>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
    tls: Option<Arc<tls::Acceptor>>,
    open: Open,
) -> impl Future<Output = ()> + Send + 'static {
    let setup = Box::pin(accept(
        Arc::clone(&proxy),
        http,
        stream,
        peer,
        shutdown,
        tls,
    ));
    async move {
        // Matched in a `let` that ends before the relay is awaited: a binding or an `if let`
        // of the set-up's answer would keep room for it, the tunnel moved into the relay, for
        // the relay's whole life.
        let relaying = match setup.await {
            Some(Upgraded::Plain(tunnel)) => Either::Left(tunnel.relay(&proxy)),
            // Boxed: the TLS stream's state is large, and plain WebSockets' tasks would
            // otherwise carry room for it.
            Some(Upgraded::Tls(tunnel)) => Either::Right(Box::pin((*tunnel).relay(&proxy))),
            None => return drop(open),
        };
        relaying.await;
        drop(open);
    }
}

/// What the set-up of a connection hands its task: an upgraded WebSocket to relay.
enum Upgraded {
    /// Over plain TCP: relayed in the task itself.
    Plain(Tunnel<TcpStream>),
    /// Over TLS: relayed in a box of its own.
    Tls(Box<Tunnel<tls::Stream>>),
}

/// Sizes of the per-connection futures in this build, in bytes (a future is as large as its
/// largest state). Logged at debug level when a traffic listener starts; `benches/README.md`,
/// "Where an idle WebSocket's bytes go", reads them from there.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// The spawned task's future ([`connection`]): what every open connection's task carries,
    /// an idle WebSocket's included.
    pub task_future: usize,
    /// Within it, the relay of one plain WebSocket ([`Tunnel::relay`]).
    pub tunnel_relay: usize,
    /// Within that, the relay proper ([`relay::Relay::run`]).
    pub relay: usize,
    /// Within that, its one timer (idle timeout, close timeout, shutdown wait).
    pub timer: usize,
    /// A TLS WebSocket's relay, boxed on its own ([`Upgraded::Tls`]).
    pub tls_relay: usize,
    /// The boxed set-up of a connection ([`accept`]): allocated at accept and freed when an
    /// upgraded WebSocket's relay starts (kept by connections on pingora's path).
    pub setup: usize,
}

impl Footprint {
    /// The sizes of this build.
    pub fn of_this_build() -> Self {
        fn returned<A, F>(_: impl FnOnce(A) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        Self {
            task_future: returned(|(p, h, s, a, w, t, o)| connection(p, h, s, a, w, t, o)),
            tunnel_relay: returned(|(t, p): (Tunnel<TcpStream>, &'static Proxy)| t.relay(p)),
            relay: returned(|(r, (c, b)): (relay::Relay, (TcpStream, TcpStream))| r.run(c, b)),
            timer: std::mem::size_of::<tokio::time::Sleep>(),
            tls_relay: returned(|(t, p): (Tunnel<tls::Stream>, &'static Proxy)| t.relay(p)),
            setup: returned(|(p, h, s, a, w, t)| accept(p, h, s, a, w, t)),
        }
    }
}

/// One accepted socket: its socket options and PROXY header ([`inbound::arrive`]), the TLS
/// handshake if the listener speaks TLS (fed the bytes read after the PROXY header), then
/// [`serve`]. The PROXY header, the handshake and the first head share one deadline,
/// `request_header_timeout` from accept. Returns an upgraded WebSocket's tunnel for the task
/// to relay (the set-up's own states, the TLS handshake's included, are freed by then).
async fn accept(
    proxy: Arc<Proxy>,
    http: Arc<HttpProxy>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
    tls: Option<Arc<tls::Acceptor>>,
) -> Option<Upgraded> {
    let config = proxy.config.load_full();
    let mut arrival = inbound::arrive(&proxy, &config, &mut stream, peer).await?;
    let listening = (&*proxy, &http, &*config, &shutdown);
    let Some(acceptor) = tls else {
        return serve(listening, stream, arrival).await.map(Upgraded::Plain);
    };
    // Boxed: the TLS handshake's states are several times the size of the plain ones, and the
    // set-up of every plain connection would otherwise allocate room for them.
    Box::pin(async move {
        let already = std::mem::take(&mut arrival.already);
        let stream = match acceptor.accept(stream, already, arrival.deadline).await {
            Ok(stream) => stream,
            Err(unclosed) => {
                // Closed in a turn: handshake timeouts come in bursts (`super::turns`).
                let _turn = listening.0.refusals.turn().await;
                drop(unclosed);
                return None;
            }
        };
        let tunnel = serve(listening, stream, arrival).await?;
        Some(Upgraded::Tls(Box::new(tunnel)))
    })
    .await
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

/// What [`serve`] runs with: the proxy, pingora's HTTP path, the config the connection was
/// accepted under, and the traffic listener's stop signal.
type Listening<'a> = (&'a Proxy, &'a Arc<HttpProxy>, &'a Config, &'a ShutdownWatch);

/// One client connection: read its first head, then the WebSocket fast path (its tunnel, once
/// upgraded) or pingora.
async fn serve<S: Transport>(
    (proxy, http, config, shutdown): Listening<'_>,
    mut stream: S,
    arrival: inbound::Arrival,
) -> Option<Tunnel<S>> {
    let opened = inbound::open(proxy, config, &mut stream, arrival).await?;
    let inbound::Opened {
        client,
        head,
        request,
    } = opened;
    // Only this is needed from here on: the method and target strings are freed now.
    let websocket = request.websocket;
    drop(request);
    if websocket && config.websocket_fast_path {
        tunnel::serve(proxy, config, stream, head, &client).await
    } else {
        // Boxed: pingora's session is large, and the set-up of every WebSocket on the fast
        // path should not allocate room for it.
        Box::pin(http::hand_over(http, stream, head, &client, shutdown)).await;
        None
    }
}
