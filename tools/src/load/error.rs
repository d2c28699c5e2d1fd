//! The load generator's error type: what failed, and against which address or process.

use std::{io, net::SocketAddr};
use tokio_tungstenite::tungstenite;

/// Everything that can stop a load run or a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a `ws://IP:PORT/` or `wss://IP:PORT/` URL.
    #[error("invalid URL {url:?}: {reason} (expected e.g. ws://127.0.0.1:8080/)")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The target address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// TLS could not be set up (the CA file, the server name).
    #[error("TLS: {what}: {reason}")]
    Tls {
        /// The file or name at fault.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {source}")]
    TlsHandshake {
        /// The target address.
        addr: SocketAddr,
        /// The handshake error.
        #[source]
        source: io::Error,
    },
    /// The WebSocket opening handshake failed.
    #[error("WebSocket handshake with {addr}: {source}")]
    Handshake {
        /// The target address.
        addr: SocketAddr,
        /// The protocol error (a non-101 answer shows up here).
        #[source]
        source: tungstenite::Error,
    },
    /// Reading or writing an open WebSocket failed.
    #[error("WebSocket I/O: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The peer answered with something other than the echo expected.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// A bounded wait ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// A `/proc/PID/...` file could not be read (the process is gone?).
    #[error("reading /proc/{pid}/{file}: {source}")]
    Proc {
        /// The process watched.
        pid: u32,
        /// `status` or `stat`.
        file: &'static str,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// A `/proc/PID/...` file did not have the expected shape.
    #[error("parsing /proc/{pid}/{file}: no {field}")]
    ProcFormat {
        /// The process watched.
        pid: u32,
        /// `status` or `stat`.
        file: &'static str,
        /// The field that was missing or malformed.
        field: &'static str,
    },
}

impl Error {
    /// The HTTP status of a refused handshake (e.g. 503 when the proxy has no room).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Handshake {
                source: tungstenite::Error::Http(response),
                ..
            } => Some(response.status().as_u16()),
            _ => None,
        }
    }
}
