//! What can stop a scenario before it has measured anything: the harness, not the proxy. A
//! scenario that returns one of these is reported as failed with the message.

use std::path::PathBuf;

/// A harness failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A child process could not be started.
    #[error("starting {what}: {source}")]
    Spawn {
        /// What was started, e.g. `echo backend 2`.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file or socket operation of the harness failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A child process did not get ready, or said something unexpected.
    #[error("{0}")]
    Child(String),
    /// The proxy's admin API answered something unexpected.
    #[error("admin API {addr}{path}: {reason}")]
    Admin {
        /// The admin listener.
        addr: std::net::SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The load generator failed.
    #[error(transparent)]
    Load(#[from] tidegate_tools::load::Error),
    /// A bounded wait ran out.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A command of the set-up (ip, nft, a k8s script) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and stderr.
        detail: String,
    },
    /// The Kubernetes API refused or failed a call of the harness.
    #[error("kube-apiserver: {what}: {source}")]
    Kube {
        /// The call.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The report or a plot could not be written.
    #[error("writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
