//! Wiring: bind the listeners, build the pingora `Server` with the listeners and side work as
//! background services, and run it — in the foreground for the binary, or on a thread of its
//! own with a handle for tests and the demo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::http::HttpFallback;
use crate::listener::{self, ListenerService, Role};
use crate::scale::local::{LocalPool, LocalPoolService};
use crate::scale::{ScaleTarget, ScalerService};
use crate::shared::Shared;
use tidegate_scaler::tidegate::TidegatePolicy;

/// A server ready to run, with the addresses its listeners are bound to.
pub struct Prepared {
    server: Server,
    /// Where client traffic is accepted.
    pub traffic_addr: SocketAddr,
    /// Where the admin endpoints are served.
    pub admin_addr: SocketAddr,
    /// The state the proxy shares with its services.
    pub shared: Arc<Shared>,
    /// The local backend pool, in local mode.
    pub pool: Option<Arc<LocalPool>>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({role}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        role: &'static str,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

fn server_conf(config: &Config) -> ServerConf {
    let pid = std::process::id();
    let dir = std::env::temp_dir();
    ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_timeout.as_secs()),
        // Per-process paths: several instances on one host must not collide (pingora's
        // defaults are fixed /tmp paths). tidegate does not use the binary upgrade.
        pid_file: dir
            .join(format!("tidegate-{pid}.pid"))
            .display()
            .to_string(),
        upgrade_sock: dir
            .join(format!("tidegate-{pid}-upgrade.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    }
}

/// Binds both listeners and assembles the server.
pub fn prepare(config: Config) -> Result<Prepared, StartError> {
    let bind =
        |addr, role| listener::bind(addr).map_err(|source| StartError::Bind { addr, role, source });
    let traffic = bind(config.listen, "listen")?;
    let admin = bind(config.admin_listen, "admin_listen")?;
    let local = |l: &std::net::TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let (traffic_addr, admin_addr) = (
        local(&traffic, config.listen),
        local(&admin, config.admin_listen),
    );

    let threads = config.threads;
    let conf = server_conf(&config);
    let (local, scaler, cap) = (
        config.backends.local.clone(),
        config.scaler.clone(),
        config.max_connections_per_backend,
    );
    let kube = crate::kube::Wiring::from_config(&config);
    let shared = Shared::new(config);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let http = HttpFallback::new(Arc::clone(&shared));
    let http = Arc::new(pingora::proxy::http_proxy(&server.configuration, http));
    server.bootstrap();

    add_listeners(&mut server, &shared, traffic, admin, http, threads);
    let pool = local.map(|local| add_local_mode(&mut server, &shared, local, scaler, cap));
    // Kubernetes mode: EndpointSlice discovery, and the scaler driving a Deployment.
    if let Some(kube) = kube {
        kube.build(&shared).add_to(&mut server);
    }
    Ok(Prepared {
        server,
        traffic_addr,
        admin_addr,
        shared,
        pool,
    })
}

/// The traffic and admin accept loops.
fn add_listeners(
    server: &mut Server,
    shared: &Arc<Shared>,
    traffic: std::net::TcpListener,
    admin: std::net::TcpListener,
    http: Arc<pingora::proxy::HttpProxy<HttpFallback>>,
    threads: usize,
) {
    let traffic = ListenerService::new(
        Role::Traffic,
        Arc::clone(shared),
        traffic,
        Arc::clone(&http),
    );
    let mut traffic = background_service("traffic", traffic);
    traffic.threads = Some(threads);
    server.add_service(traffic);
    let admin = ListenerService::new(Role::Admin, Arc::clone(shared), admin, http);
    server.add_service(background_service("admin", admin));
    let history = crate::admin::HistoryService(Arc::clone(shared));
    server.add_service(background_service("history", history));
}

/// Local mode: the process pool, and the scaler driving it when configured.
fn add_local_mode(
    server: &mut Server,
    shared: &Arc<Shared>,
    local: crate::config::LocalBackends,
    scaler: Option<crate::config::ScalerSection>,
    cap: u32,
) -> Arc<LocalPool> {
    let remove_below = scaler.as_ref().map_or(0, |s| s.policy.drain_remove_below);
    let pool = Arc::new(LocalPool::new(
        local,
        cap,
        remove_below,
        Arc::clone(&shared.table),
    ));
    server.add_service(background_service(
        "local-backends",
        LocalPoolService(Arc::clone(&pool)),
    ));
    if let Some(section) = scaler {
        let policy = Box::new(TidegatePolicy::new(section.policy_config(cap)));
        let target: Arc<dyn ScaleTarget> = Arc::clone(&pool) as Arc<dyn ScaleTarget>;
        let service = ScalerService::new(Arc::clone(shared), target, policy, section.dry_run);
        server.add_service(background_service("scaler", service));
    }
    pool
}

impl Prepared {
    /// Watches `path` and reloads the config when it changes (see [`crate::reload`]); `load`
    /// re-reads it with any command-line overrides.
    pub fn watch_config(
        &mut self,
        path: std::path::PathBuf,
        load: crate::reload::Loader,
    ) -> prometheus::Result<()> {
        let watch = crate::reload::ConfigWatch::new(path, load, Arc::clone(&self.shared))?;
        self.server
            .add_service(background_service("config-reload", watch));
        Ok(())
    }

    /// Runs until SIGTERM (graceful: open connections get the grace period) or SIGINT (fast).
    pub fn run_until_signal(self) {
        self.server.run(RunArgs::default());
    }

    /// Runs on a thread of its own; the handle stops it.
    pub fn spawn(self) -> RunningProxy {
        let (tx, rx) = mpsc::unbounded_channel();
        let Prepared {
            server,
            traffic_addr,
            admin_addr,
            shared,
            pool,
        } = self;
        let signal = Box::new(ChannelSignal(tokio::sync::Mutex::new(rx)));
        let thread = std::thread::Builder::new()
            .name("tidegate-server".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: signal,
                })
            })
            .unwrap_or_else(|e| panic!("cannot start the server thread: {e}"));
        RunningProxy {
            traffic_addr,
            admin_addr,
            shared,
            pool,
            stop: tx,
            thread: Some(thread),
        }
    }
}

/// A proxy running on its own thread. Dropping it stops the proxy (fast shutdown).
pub struct RunningProxy {
    /// Where client traffic is accepted.
    pub traffic_addr: SocketAddr,
    /// Where the admin endpoints are served.
    pub admin_addr: SocketAddr,
    /// The proxy's shared state (table, metrics, config).
    pub shared: Arc<Shared>,
    /// The local backend pool, in local mode.
    pub pool: Option<Arc<LocalPool>>,
    stop: mpsc::UnboundedSender<ShutdownSignal>,
    thread: Option<JoinHandle<()>>,
}

impl RunningProxy {
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

impl Drop for RunningProxy {
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
