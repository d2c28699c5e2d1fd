//! The client side of a connection: a plain TCP socket or a terminated TLS stream
//! ([`crate::tls::Stream`]). The paths after accept (head, fast path, pingora) are written once
//! over [`Client`], which says the few things that differ: the scheme the client used, how to
//! wait for its first bytes without a buffer, and how pingora takes it over. The relay
//! ([`super::relay`]) is generic over its streams and needs nothing more: `wss://` WebSockets
//! get the same frame tracking, drain closes and counts as `ws://` ones.

use std::future::Future;
use std::io;

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls;

/// What the data plane needs of a client connection.
pub trait Client: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// The scheme the client used (`http`, `https`): the `X-Forwarded-Proto` backends get.
    const PROTO: &'static str;

    /// Waits until the first request bytes can be read, holding no buffer while it waits.
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// The connection as pingora's transport, replaying `already_read` first.
    fn into_pingora(self, already_read: &[u8]) -> pingora::protocols::Stream;
}

impl Client for TcpStream {
    const PROTO: &'static str = "http";

    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }

    fn into_pingora(self, already_read: &[u8]) -> pingora::protocols::Stream {
        let mut stream = L4Stream::from(self);
        stream.rewind(already_read);
        Box::new(stream)
    }
}

impl Client for tls::Stream {
    const PROTO: &'static str = "https";

    /// At once: the request may already sit decrypted in rustls (it often arrives with the
    /// client's Finished), where waiting on the socket would not see it.
    async fn ready(&self) -> io::Result<()> {
        Ok(())
    }

    fn into_pingora(self, already_read: &[u8]) -> pingora::protocols::Stream {
        Box::new(tls::stream::HttpIo::new(self, already_read.to_vec()))
    }
}
