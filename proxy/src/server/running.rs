//! Running an [`App`]: pingora runs the process and every component as a background service;
//! tidegate owns the shutdown.
//!
//! SIGTERM (and SIGQUIT), or [`Running::stop_gracefully`], runs the drain
//! ([`crate::dataplane::drain`]) while every component keeps running — the admin listener
//! included, so `/readyz` answers 503 until exit. Then the components are told to stop (a leader
//! releases its Lease, local backends are stopped) and get `shutdown_timeout` to do so, and only
//! then is pingora told to stop at once, dropping the runtimes and whatever they still hold.
//! SIGINT, or dropping a [`Running`], stops at once, also in the middle of a drain. pingora's own
//! grace period is not used: it would wait out the whole of it even with nothing open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, warn};

use super::{App, Handles, Service};
use crate::dataplane::Proxy;
use crate::dataplane::connections::until_zero;

/// How a stop was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Drain first (SIGTERM, SIGQUIT, [`Running::stop_gracefully`]).
    Graceful,
    /// Stop now (SIGINT, dropping a [`Running`]).
    Fast,
}

/// Where stop requests come from: the process's signals, or a channel (tests, the demo).
enum Requests {
    Signals,
    Channel(tokio::sync::Mutex<mpsc::UnboundedReceiver<Stop>>),
}

impl Requests {
    async fn next(&self) -> Stop {
        match self {
            Self::Signals => next_signal().await,
            Self::Channel(rx) => rx.lock().await.recv().await.unwrap_or(Stop::Fast),
        }
    }

    /// Returns at the first request to stop now; graceful ones are ignored (a drain runs).
    async fn fast(&self) {
        while self.next().await != Stop::Fast {
            info!("already draining; SIGINT stops at once");
        }
    }
}

async fn next_signal() -> Stop {
    let listen =
        |kind| signal(kind).inspect_err(|e| error!(error = %e, "cannot listen for a signal"));
    let (Ok(mut term), Ok(mut quit), Ok(mut int)) = (
        listen(SignalKind::terminate()),
        listen(SignalKind::quit()),
        listen(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => Stop::Graceful,
        _ = quit.recv() => Stop::Graceful,
        _ = int.recv() => Stop::Fast,
    }
}

/// The components' own shutdown watch, and how many of them still run.
#[derive(Clone)]
struct Components {
    stop: Arc<watch::Sender<bool>>,
    running: Arc<(AtomicUsize, Notify)>,
}

impl Components {
    fn new() -> Self {
        Self {
            stop: Arc::new(watch::Sender::new(false)),
            running: Arc::default(),
        }
    }

    /// Tells every component to stop; waits until all have, or `timeout` has passed.
    async fn stop(&self, timeout: Duration) {
        self.stop.send_replace(true);
        let (running, changed) = &*self.running;
        let all_stopped = until_zero(changed, || running.load(Ordering::Acquire));
        if tokio::time::timeout(timeout, all_stopped).await.is_err() {
            let left = running.load(Ordering::Acquire);
            warn!(
                left,
                ?timeout,
                "components still running after shutdown_timeout"
            );
        }
    }
}

/// Runs a shared service on the components' watch (not pingora's), counted while it runs.
struct Run {
    service: Service,
    components: Components,
}

#[async_trait]
impl BackgroundService for Run {
    async fn start(&self, _pingora: ShutdownWatch) {
        let (running, changed) = &*self.components.running;
        self.service.start(self.components.stop.subscribe()).await;
        running.fetch_sub(1, Ordering::AcqRel);
        changed.notify_waiters();
    }
}

/// tidegate's shutdown, as pingora's signal watch: returns only once a stop is complete.
struct Shutdown {
    requests: Requests,
    proxy: Arc<Proxy>,
    components: Components,
}

impl Shutdown {
    fn into_args(self) -> RunArgs {
        RunArgs {
            shutdown_signal: Box::new(self),
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Shutdown {
    async fn recv(&self) -> ShutdownSignal {
        if self.requests.next().await == Stop::Fast {
            info!("stopping now");
            return ShutdownSignal::FastShutdown;
        }
        let orderly = async {
            let config = self.proxy.config.load_full();
            let (delay, grace) = (config.shutdown_delay, config.grace_period);
            self.proxy
                .drain
                .run(&self.proxy.connections, delay, grace)
                .await;
            self.components.stop(config.shutdown_timeout).await;
        };
        tokio::select! {
            () = orderly => info!("stopped"),
            () = self.requests.fast() => warn!("stopping now, in the middle of the drain"),
        }
        ShutdownSignal::FastShutdown
    }
}

impl App {
    fn into_server(
        self,
        requests: Requests,
    ) -> (
        Server,
        Shutdown,
        Handles,
        [SocketAddr; 2],
        Option<SocketAddr>,
    ) {
        let mut server = Server::new_with_opt_and_conf(None, self.conf);
        server.bootstrap();
        let components = Components::new();
        for c in self.components {
            components.running.0.fetch_add(1, Ordering::AcqRel);
            let run = Run {
                service: c.service,
                components: components.clone(),
            };
            let mut service = background_service(c.name, run);
            if c.threads.is_some() {
                service.threads = c.threads;
            }
            server.add_service(service);
        }
        let shutdown = Shutdown {
            requests,
            proxy: Arc::clone(&self.handles.proxy),
            components,
        };
        let addrs = [self.traffic_addr, self.admin_addr];
        (server, shutdown, self.handles, addrs, self.tls_addr)
    }

    /// Runs until SIGTERM or SIGQUIT (drain, then stop) or SIGINT (stop now).
    pub fn run(self) {
        let (server, shutdown, ..) = self.into_server(Requests::Signals);
        server.run(shutdown.into_args());
    }

    /// Runs on a thread of its own; the handle stops it.
    pub fn spawn(self) -> Running {
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = Requests::Channel(tokio::sync::Mutex::new(rx));
        let (server, shutdown, handles, [traffic_addr, admin_addr], tls_addr) =
            self.into_server(requests);
        let thread = std::thread::Builder::new()
            .name("tidegate-server".into())
            .spawn(move || server.run(shutdown.into_args()))
            .unwrap_or_else(|e| panic!("cannot start the server thread: {e}"));
        Running {
            traffic_addr,
            tls_addr,
            admin_addr,
            handles,
            stop: tx,
            thread: Some(thread),
        }
    }
}

/// A proxy running on its own thread. Dropping it stops the proxy at once.
pub struct Running {
    /// Where client traffic is accepted.
    pub traffic_addr: SocketAddr,
    /// Where TLS is served, if anywhere (see [`App::tls_addr`]).
    pub tls_addr: Option<SocketAddr>,
    /// Where the admin endpoints are served.
    pub admin_addr: SocketAddr,
    /// The shared pieces: table, catalog, scaler status, pool, …
    pub handles: Handles,
    stop: mpsc::UnboundedSender<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Drains as on SIGTERM (`shutdown_delay`, then the closes over `grace_period`), stops
    /// the components and returns once the proxy has stopped.
    pub fn stop_gracefully(mut self) {
        self.stop_with(Stop::Graceful);
    }

    /// Starts the drain without waiting for it (e.g. to watch it from a test); dropping the
    /// handle still stops at once.
    pub fn begin_graceful_stop(&self) {
        let _ = self.stop.send(Stop::Graceful);
    }

    fn stop_with(&mut self, stop: Stop) {
        let _ = self.stop.send(stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_with(Stop::Fast);
    }
}
