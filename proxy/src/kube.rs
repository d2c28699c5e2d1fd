//! The Kubernetes client shared by discovery ([`crate::discovery::kube`]), the Deployment
//! target ([`crate::target::deployment`]) and leader election ([`crate::leader`]): how
//! credentials are found, and what can go wrong talking to the API server; and the
//! EndpointSlice watch that backend and peer discovery share ([`follow_slices`]).
//!
//! Every service builds its own [`Client`] inside its `start()`, on the runtime that uses it (a
//! client built before `server.run` dies with the runtime that built it).
//!
//! Every call that is not a watch runs under [`within`]: the client's own read timeout is
//! minutes long (for watches), and a call that hangs must not keep a leader acting past its
//! Lease (`docs/architecture.md`, "One edge across replicas").

#[cfg(test)]
pub(crate) mod fixtures;
mod slices;

pub use slices::follow_slices;

use std::future::Future;
use std::time::Duration;

use ::kube::Client;
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use pingora::server::ShutdownWatch;
use tracing::warn;

use crate::config::KubeClientConfig;

/// What went wrong talking to Kubernetes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials could be loaded (kubeconfig or service account).
    #[error("cannot load Kubernetes credentials: {0}")]
    Credentials(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The API server answered with an error status.
    #[error("{what}: the API server answered {code}: {message}")]
    Api {
        /// The call.
        what: &'static str,
        /// HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached, or the answer could not be read.
    #[error("{what}: {source}")]
    Transport {
        /// The call.
        what: &'static str,
        /// The client's error.
        #[source]
        source: ::kube::Error,
    },
    /// The EndpointSlice watch failed (it is retried with backoff).
    #[error("EndpointSlice watch: {0}")]
    Watch(#[source] ::kube::runtime::watcher::Error),
    /// The API server did not answer in time.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// The call.
        what: &'static str,
        /// The time allowed.
        after: Duration,
    },
}

/// Longest one API call may take when no Lease bounds it tighter (no leader election).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the API call `what` with at most `timeout`; a client error is wrapped as
/// [`Error::from_kube`], running out of time is [`Error::Timeout`].
pub async fn within<T>(
    timeout: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, ::kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| Error::from_kube(what, e)),
        Err(_) => Err(Error::Timeout {
            what,
            after: timeout,
        }),
    }
}

impl Error {
    /// Wraps a client error from the call `what`.
    pub fn from_kube(what: &'static str, e: ::kube::Error) -> Self {
        match e {
            ::kube::Error::Api(s) => Self::Api {
                what,
                code: s.code,
                message: s.message,
            },
            source => Self::Transport { what, source },
        }
    }

    /// The HTTP status, for API errors.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying the same call again may succeed (conflicts, throttling, server errors and
    /// transport errors; not 4xx answers such as 403 or 404).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { code, .. } => matches!(code, 409 | 429) || *code >= 500,
            Self::Transport { .. } | Self::Watch(_) | Self::Timeout { .. } => true,
            Self::Credentials(_) => false,
        }
    }

    /// A bounded label for `tidegate_scaler_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "credentials",
            Self::Api { code: 409, .. } => "conflict",
            Self::Api { code: 403, .. } => "forbidden",
            Self::Api { code: 404, .. } => "not_found",
            Self::Api { code: 429, .. } => "throttled",
            Self::Api { code, .. } if *code >= 500 => "server_error",
            Self::Api { .. } => "rejected",
            Self::Transport { .. } => "transport",
            Self::Watch(_) => "watch",
            Self::Timeout { .. } => "timeout",
        }
    }
}

/// Builds a client from `source`: its kubeconfig and context when given, else as `kubectl`
/// does (`$KUBECONFIG`, `~/.kube/config`, then the pod's service account).
pub async fn client(source: &KubeClientConfig) -> Result<Client, Error> {
    fn creds(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Credentials(Box::new(e))
    }
    // kube builds its rustls config from the process default provider (crate::tls).
    crate::tls::install_provider();
    if source.kubeconfig.is_none() && source.context.is_none() {
        return Client::try_default().await.map_err(creds);
    }
    let options = KubeConfigOptions {
        context: source.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &source.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(creds)?;
            ::kube::Config::from_custom_kubeconfig(file, &options).await
        }
        None => ::kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(creds)?;
    Client::try_from(config).map_err(creds)
}

/// Builds a client, retrying every few seconds until it works or shutdown is asked for (then
/// `None`). Failures are logged and counted through `count`.
pub async fn connect(
    source: &KubeClientConfig,
    shutdown: &mut ShutdownWatch,
    count: impl Fn(&Error),
) -> Option<Client> {
    let mut delay = Duration::from_millis(500);
    loop {
        match client(source).await {
            Ok(c) => return Some(c),
            Err(e) => {
                warn!(error = %e, "cannot build a Kubernetes client; retrying");
                count(&e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    fn api(code: u16) -> Error {
        Error::Api {
            what: "test",
            code,
            message: String::new(),
        }
    }

    #[test]
    fn conflicts_and_server_errors_are_retried_refusals_are_not() {
        for (code, retry, label) in [
            (409, true, "conflict"),
            (429, true, "throttled"),
            (503, true, "server_error"),
            (403, false, "forbidden"),
            (404, false, "not_found"),
            (422, false, "rejected"),
        ] {
            assert_eq!(api(code).is_retryable(), retry, "{code}");
            assert_eq!(api(code).metric_label(), label);
        }
        let io = std::io::Error::other("no kubeconfig");
        assert!(!Error::Credentials(Box::new(io)).is_retryable());
    }
}
