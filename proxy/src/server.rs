//! Assembly: bind the listeners, build every component over one metrics registry, and run them
//! as pingora background services — in the foreground for the binary ([`App::run`]), or on a
//! thread of its own with a handle for tests and the demo ([`App::spawn`]).
//!
//! [`App::build`] is the one place that knows which components a config asks for: the data
//! plane and the admin listener always; the fixed, local ([`local`]) or Kubernetes
//! ([`kubernetes`]) backend source; the scaler with its target and, in a cluster, leader
//! election; with `peers`, the peer exchange ([`peers`]), which the scaler then reads its
//! demand from.

mod kubernetes;
mod local;
mod peers;
mod running;

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::services::background::BackgroundService;
use prometheus::Registry;
use tidegate_common::BackendTable;
use tidegate_scaler::tidegate::TidegatePolicy;
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::config::{Config, ScalerSection};
use crate::dataplane::http::HttpFallback;
use crate::dataplane::{Proxy, listener};
use crate::discovery::{self, Catalog};
use crate::scaling::{Scaler, Status};
use crate::target::{self, DryRun, ScaleTarget};
pub use running::Running;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({field}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config field that names it.
        field: &'static str,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A metric could not be registered.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
    /// TLS could not be set up (a certificate pair is missing, broken or mismatched).
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
}

/// A background service shared behind an `Arc`, so that tests can run the same object.
pub type Service = Arc<dyn BackgroundService + Send + Sync>;

/// One component to run: its name (pingora's thread names, tests' filters), the service, and
/// its worker threads (`None`: one).
pub struct Component {
    /// e.g. `traffic`, `admin`, `scaler`, `kube-discovery`.
    pub name: &'static str,
    /// What runs.
    pub service: Service,
    /// Worker threads of its runtime.
    pub threads: Option<usize>,
}

/// What tests, the demo and the binary hold on to while the components run.
#[derive(Clone)]
pub struct Handles {
    /// The data plane: the config in force, the backend table, its metrics.
    pub proxy: Arc<Proxy>,
    /// The discovered endpoints and drain marks.
    pub catalog: Arc<Catalog>,
    /// What the admin listener serves.
    pub admin: Arc<Admin>,
    /// The scaler's status, when a scaler runs.
    pub scaler: Option<Arc<Status>>,
    /// The local backend pool, in local mode.
    pub pool: Option<Arc<target::local::Pool>>,
    /// The Deployment target, when the scaler drives a Deployment.
    pub deployment: Option<Arc<target::deployment::Target>>,
    /// Leadership, when leader election is on.
    pub leading: Option<watch::Receiver<bool>>,
    /// The peer exchange, when peers are configured.
    pub peers: Option<Arc<crate::peers::Peers>>,
}

/// A proxy assembled from a config, with its listeners bound, ready to run.
pub struct App {
    /// Where client traffic is accepted.
    pub traffic_addr: SocketAddr,
    /// Where TLS is served: `traffic_addr` itself, or the `tls.listen` listener; `None`
    /// without `tls`.
    pub tls_addr: Option<SocketAddr>,
    /// Where the admin endpoints are served.
    pub admin_addr: SocketAddr,
    /// The shared pieces.
    pub handles: Handles,
    /// Every component, in start order.
    pub components: Vec<Component>,
    conf: ServerConf,
    registry: Registry,
}

impl App {
    /// Binds both listeners and builds every component `config` asks for.
    pub fn build(config: Config) -> Result<App, Error> {
        let bind = |addr, field| {
            listener::bind(addr).map_err(|source| Error::Bind {
                addr,
                field,
                source,
            })
        };
        let traffic =
            listener::bind_group(config.listen, config.threads).map_err(|source| Error::Bind {
                addr: config.listen,
                field: "listen",
                source,
            })?;
        let admin = bind(config.admin_listen, "admin_listen")?;
        let local = |l: &std::net::TcpListener, fallback| l.local_addr().unwrap_or(fallback);
        let traffic_addr = traffic
            .first()
            .map_or(config.listen, |l| local(l, config.listen));
        let admin_addr = local(&admin, config.admin_listen);
        let tls_listener = match config.tls.as_ref().and_then(|t| t.listen) {
            Some(addr) => Some(
                listener::bind_group(addr, config.threads).map_err(|source| Error::Bind {
                    addr,
                    field: "tls.listen",
                    source,
                })?,
            ),
            None => None,
        };
        let tls_addr = match (&config.tls, tls_listener.as_ref().and_then(|g| g.first())) {
            (None, _) => None,
            (Some(_), None) => Some(traffic_addr),
            (Some(section), Some(l)) => section.listen.map(|a| local(l, a)),
        };

        let conf = server_conf(&config);
        let mut assembly = Assembly::new(&config)?;
        assembly.add_leader(&config)?;
        assembly.add_peers(&config, admin_addr.port())?;
        if let Some(local) = &config.backends.local {
            assembly.add_local(local.clone(), config.scaler.as_ref(), &config)?;
        }
        if let Some(source) = &config.backends.kubernetes {
            assembly.add_kubernetes(source.clone(), &config)?;
        }
        let http_conf = Arc::new(server_conf(&config));
        let listeners = Listeners {
            traffic,
            tls: tls_listener,
            admin,
        };
        let admin = assembly.add_listeners(listeners, &http_conf, &config)?;
        let Assembly {
            registry,
            proxy,
            catalog,
            scaler,
            pool,
            deployment,
            leading,
            peers,
            components,
        } = assembly;
        Ok(App {
            traffic_addr,
            tls_addr,
            admin_addr,
            handles: Handles {
                proxy,
                catalog,
                admin,
                scaler,
                pool,
                deployment,
                leading,
                peers,
            },
            components,
            conf,
            registry,
        })
    }

    /// Watches `path` and reloads the config when it changes (see [`crate::reload`]); `load`
    /// re-reads it with any command-line overrides.
    pub fn watch_config(
        &mut self,
        path: std::path::PathBuf,
        load: crate::reload::Loader,
    ) -> Result<(), Error> {
        let proxy = Arc::clone(&self.handles.proxy);
        let catalog = Arc::clone(&self.handles.catalog);
        let watch = crate::reload::Watch::new(path, load, proxy, catalog, &self.registry)?;
        self.components.push(Component {
            name: "config-reload",
            service: Arc::new(watch),
            threads: None,
        });
        Ok(())
    }
}

/// The components as they are built, before they become an [`App`].
struct Assembly {
    registry: Registry,
    proxy: Arc<Proxy>,
    catalog: Arc<Catalog>,
    scaler: Option<Arc<Status>>,
    pool: Option<Arc<target::local::Pool>>,
    deployment: Option<Arc<target::deployment::Target>>,
    leading: Option<watch::Receiver<bool>>,
    peers: Option<Arc<crate::peers::Peers>>,
    components: Vec<Component>,
}

impl Assembly {
    /// The data plane and the catalog (filled now from `backends.static`, if that is the source).
    /// With peers, the table's caps are shared.
    fn new(config: &Config) -> Result<Self, Error> {
        let registry = Registry::new();
        let table = Arc::new(if config.peers.is_some() {
            BackendTable::shared()
        } else {
            BackendTable::new()
        });
        let cap = config.max_connections_per_backend;
        let catalog = Arc::new(Catalog::new(Arc::clone(&table), cap));
        if config.backends.is_static() {
            catalog.replace(discovery::fixed::endpoints(config));
        }
        Ok(Self {
            proxy: Arc::new(Proxy::new(config.clone(), table, &registry)?),
            registry,
            catalog,
            scaler: None,
            pool: None,
            deployment: None,
            leading: None,
            peers: None,
            components: Vec::new(),
        })
    }

    fn add(&mut self, name: &'static str, service: Service) {
        self.components.push(Component {
            name,
            service,
            threads: None,
        });
    }

    /// The scaler loop over `target` with the policy of `section`, its status registered.
    fn add_scaler(
        &mut self,
        section: &ScalerSection,
        capacity: u32,
        target: Arc<dyn ScaleTarget>,
    ) -> Result<(), Error> {
        let target: Arc<dyn ScaleTarget> = if section.dry_run {
            Arc::new(DryRun(target))
        } else {
            target
        };
        let status = Arc::new(Status::new(&self.registry, self.leading.clone())?);
        let policy = Box::new(TidegatePolicy::new(section.policy_config(capacity)));
        let demand: Arc<dyn crate::scaling::Demand> = match &self.peers {
            Some(peers) => Arc::new(crate::peers::Demand(Arc::clone(peers))),
            None => Arc::clone(&self.proxy) as Arc<dyn crate::scaling::Demand>,
        };
        let warmup = section.policy.scale_down_window;
        let mut scaler = Scaler::new(target, policy, demand, Arc::clone(&status), warmup);
        if let Some(leading) = &self.leading {
            scaler = scaler.with_leadership(leading.clone());
        }
        self.scaler = Some(status);
        self.add("scaler", Arc::new(scaler));
        Ok(())
    }

    /// The traffic accept loops (plain, TLS or both, per `config.tls`) with the certificate
    /// rotation, the admin listener and the history sampler; returns what admin serves.
    fn add_listeners(
        &mut self,
        listeners: Listeners,
        conf: &Arc<ServerConf>,
        config: &Config,
    ) -> Result<Arc<Admin>, Error> {
        let proxy = Arc::clone(&self.proxy);
        let fallback = HttpFallback::new(Arc::clone(&proxy));
        let http = Arc::new(pingora::proxy::http_proxy(conf, fallback));
        let acceptor = match &config.tls {
            Some(section) => {
                let (acceptor, rotation) = crate::tls::Acceptor::new(section, &self.registry)?;
                self.add("tls-rotation", Arc::new(rotation));
                Some(Arc::new(acceptor))
            }
            None => None,
        };
        let threads = Some(config.threads);
        let mut traffic = |name, listener, tls| {
            let service =
                listener::Traffic::new(name, Arc::clone(&proxy), listener, Arc::clone(&http), tls);
            self.components.push(Component {
                name,
                service: Arc::new(service),
                threads,
            });
        };
        match listeners.tls {
            // `listen` speaks TLS.
            None => traffic("traffic", listeners.traffic, acceptor),
            // `listen` stays plain; `tls.listen` speaks TLS.
            Some(tls) => {
                traffic("traffic", listeners.traffic, None);
                traffic("traffic_tls", tls, acceptor);
            }
        }
        let admin = listeners.admin;
        let history = Arc::new(admin::history::History::default());
        let served = Arc::new(Admin {
            proxy: Arc::clone(&proxy),
            registry: self.registry.clone(),
            scaler: self.scaler.clone(),
            history: Arc::clone(&history),
            peers: self.peers.clone(),
        });
        let listener = admin::Listener::new(Arc::clone(&served), admin);
        self.add("admin", Arc::new(listener));
        let scaler = self.scaler.clone();
        let sampler = admin::history::Sampler {
            history,
            proxy,
            scaler,
        };
        self.add("history", Arc::new(sampler));
        Ok(served)
    }
}

/// The sockets bound before the components are built.
struct Listeners {
    traffic: Vec<std::net::TcpListener>,
    tls: Option<Vec<std::net::TcpListener>>,
    admin: std::net::TcpListener,
}

fn server_conf(config: &Config) -> ServerConf {
    let pid = std::process::id();
    let dir = std::env::temp_dir();
    ServerConf {
        threads: config.threads,
        // tidegate drains by itself before it lets pingora stop (`running`): none of pingora's.
        grace_period_seconds: Some(0),
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
