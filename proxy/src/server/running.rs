//! Running an [`App`]: pingora owns the process and its signals, and every component becomes a
//! pingora background service sharing its shutdown watch.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use async_trait::async_trait;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use tokio::sync::mpsc;

use super::{App, Handles, Service};

impl App {
    fn into_server(self) -> (Server, Handles, [SocketAddr; 2], Option<SocketAddr>) {
        let mut server = Server::new_with_opt_and_conf(None, self.conf);
        server.bootstrap();
        for c in self.components {
            let mut service = background_service(c.name, Run(c.service));
            if c.threads.is_some() {
                service.threads = c.threads;
            }
            server.add_service(service);
        }
        let addrs = [self.traffic_addr, self.admin_addr];
        (server, self.handles, addrs, self.tls_addr)
    }

    /// Runs until SIGTERM (graceful: open connections get the grace period) or SIGINT (fast).
    pub fn run(self) {
        let (server, ..) = self.into_server();
        server.run(RunArgs::default());
    }

    /// Runs on a thread of its own; the handle stops it.
    pub fn spawn(self) -> Running {
        let (tx, rx) = mpsc::unbounded_channel();
        let (server, handles, [traffic_addr, admin_addr], tls_addr) = self.into_server();
        let signal = Box::new(ChannelSignal(tokio::sync::Mutex::new(rx)));
        let thread = std::thread::Builder::new()
            .name("tidegate-server".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: signal,
                })
            })
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

/// Runs a shared service.
struct Run(Service);

#[async_trait]
impl BackgroundService for Run {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.start(shutdown).await;
    }
}

/// A proxy running on its own thread. Dropping it stops the proxy (fast shutdown).
pub struct Running {
    /// Where client traffic is accepted.
    pub traffic_addr: SocketAddr,
    /// Where TLS is served, if anywhere (see [`App::tls_addr`]).
    pub tls_addr: Option<SocketAddr>,
    /// Where the admin endpoints are served.
    pub admin_addr: SocketAddr,
    /// The shared pieces: table, catalog, scaler status, pool, …
    pub handles: Handles,
    stop: mpsc::UnboundedSender<ShutdownSignal>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open connections run for the grace period, then stops.
    pub fn stop_gracefully(mut self) {
        self.stop_with(ShutdownSignal::GracefulTerminate);
    }

    fn stop_with(&mut self, signal: ShutdownSignal) {
        let _ = self.stop.send(signal);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_with(ShutdownSignal::FastShutdown);
    }
}

/// A shutdown request that comes over a channel rather than a Unix signal.
struct ChannelSignal(tokio::sync::Mutex<mpsc::UnboundedReceiver<ShutdownSignal>>);

#[async_trait]
impl ShutdownSignalWatch for ChannelSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}
