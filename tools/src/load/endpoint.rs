//! Where the load goes: a `ws://IP:PORT/path` or `wss://IP:PORT/path` URL, and how to open and
//! close one WebSocket there. Names are not resolved (`localhost` aside): a load generator
//! should not measure DNS. `wss://` needs the CA to trust ([`Endpoint::with_tls`]).

use super::Error;
use super::secure::{Conn, Tls};
use futures_util::StreamExt;
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{self, protocol::WebSocketConfig},
};

/// An open client WebSocket.
pub type Ws = WebSocketStream<Conn>;

/// A WebSocket URL on an IP address, parsed once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    url: String,
    /// `wss://`.
    secure: bool,
    tls: Option<Tls>,
}

impl Endpoint {
    /// Parses `ws://IP:PORT/path` or `wss://…` (or `localhost` for the IP; no other names).
    ///
    /// ```
    /// use tidegate_tools::load::endpoint::Endpoint;
    /// let e = Endpoint::parse("ws://127.0.0.1:9000/chat").unwrap();
    /// assert_eq!(e.addr().port(), 9000);
    /// assert!(e.is_loopback());
    /// assert!(!Endpoint::parse("ws://10.0.0.1:9000/").unwrap().is_loopback());
    /// assert!(Endpoint::parse("ws://localhost:9000").unwrap().is_loopback());
    /// assert!(Endpoint::parse("wss://127.0.0.1:8443/").unwrap().is_secure());
    /// assert!(Endpoint::parse("http://127.0.0.1:9000/").is_err());
    /// assert!(Endpoint::parse("ws://example.com:80/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason| Error::Url {
            url: url.to_owned(),
            reason,
        };
        let (secure, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad("scheme must be ws:// or wss://")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = match authority.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => authority.to_owned(),
        };
        let addr: SocketAddr = authority.parse().map_err(|_| bad("host must be IP:PORT"))?;
        let url = if rest.contains('/') {
            url.to_owned()
        } else {
            format!("{url}/")
        };
        Ok(Self {
            addr,
            url,
            secure,
            tls: None,
        })
    }

    /// Speaks TLS with `tls` (needed for a `wss://` URL before connecting).
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether the URL is `wss://`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether the target is on this machine's loopback interface.
    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// The URL, with a path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens one WebSocket (TCP with `TCP_NODELAY`, TLS for `wss://`, then the HTTP/1.1
    /// upgrade).
    pub async fn connect(&self, config: WebSocketConfig) -> Result<Ws, Error> {
        let addr = self.addr;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect { addr, source })?;
        tcp.set_nodelay(true)
            .map_err(|source| Error::Connect { addr, source })?;
        let conn = match (&self.tls, self.secure) {
            (_, false) => Conn::Plain(tcp),
            (Some(tls), true) => {
                let stream = tls
                    .connect(tcp)
                    .await
                    .map_err(|source| Error::TlsHandshake { addr, source })?;
                Conn::Tls(Box::new(stream))
            }
            (None, true) => {
                return Err(Error::Tls {
                    what: self.url.clone(),
                    reason: "a wss:// URL needs a CA to trust (--ca FILE)".into(),
                });
            }
        };
        let (ws, _response) = client_async_with_config(self.url.as_str(), conn, Some(config))
            .await
            .map_err(|source| Error::Handshake { addr, source })?;
        Ok(ws)
    }
}

/// tungstenite's default client config.
pub fn default_config() -> WebSocketConfig {
    WebSocketConfig::default()
}

/// A client config with small buffers, for scenarios that hold many quiet connections.
pub fn small_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Closes a WebSocket: sends a Close frame, then reads until the peer's Close has arrived and
/// the stream ended, or `limit` has passed. A peer that drops the TCP connection instead of
/// answering our Close also counts as closed: the connection is gone either way.
pub async fn close(mut ws: Ws, limit: Duration) -> Result<(), Error> {
    match ws.close(None).await {
        Err(e) if !is_closed(&e) => return Err(e.into()),
        _ => {}
    }
    let drain = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(_) => {}
                Err(e) if is_closed(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(limit, drain)
        .await
        .map_err(|_| Error::Timeout("waiting for Close"))?
}

/// Errors that only say the connection is already gone.
fn is_closed(e: &tungstenite::Error) -> bool {
    use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
    matches!(
        e,
        tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ResetWithoutClosingHandshake)
    )
}
