//! The stream a client connection is carried on: a plain TCP socket or a terminated TLS stream
//! ([`crate::tls::Stream`]). The paths after accept (head, fast path, pingora) are written once
//! over [`Transport`], which says the few things that differ: the scheme the client used, how
//! to wait for its first bytes without a buffer, the TCP socket underneath, and how pingora
//! takes it over. The relay ([`super::relay`]) is generic over its streams and needs nothing
//! more: `wss://` WebSockets get the same frame tracking, drain closes and counts as `ws://`
//! ones.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::client::{Client, Proto};
use crate::tls;

/// What the data plane needs of a client connection's stream.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// The scheme the client speaks on it: the `X-Forwarded-Proto` backends get.
    const PROTO: Proto;

    /// Waits until the first request bytes can be read, holding no buffer while it waits.
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// The TCP socket underneath: to watch for the client leaving without reading, and for
    /// the socket's own address.
    fn socket(&self) -> &TcpStream;

    /// The connection as pingora's transport, replaying `already_read` first and reporting
    /// `client` as its peer (and its local address, if the PROXY header named one).
    fn into_pingora(self, already_read: &[u8], client: &Client) -> pingora::protocols::Stream;
}

impl Transport for TcpStream {
    const PROTO: Proto = Proto::Http;

    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }

    fn socket(&self) -> &TcpStream {
        self
    }

    fn into_pingora(self, already_read: &[u8], client: &Client) -> pingora::protocols::Stream {
        let digest = socket_digest(&self, client);
        let mut stream = L4Stream::from(self);
        stream.set_socket_digest(digest);
        stream.rewind(already_read);
        Box::new(stream)
    }
}

impl Transport for tls::Stream {
    const PROTO: Proto = Proto::Https;

    /// At once: the request may already sit decrypted in rustls (it often arrives with the
    /// client's Finished), where waiting on the socket would not see it.
    async fn ready(&self) -> io::Result<()> {
        Ok(())
    }

    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }

    fn into_pingora(self, already_read: &[u8], client: &Client) -> pingora::protocols::Stream {
        let digest = socket_digest(self.socket(), client);
        Box::new(tls::stream::HttpIo::new(
            self,
            already_read.to_vec(),
            digest,
        ))
    }
}

/// The socket digest pingora reports for `socket`: `client` as its peer; its local address the
/// PROXY header's, or else looked up from the socket if pingora ever asks.
fn socket_digest(socket: &TcpStream, client: &Client) -> SocketDigest {
    let digest = SocketDigest::from_raw_fd(socket.as_raw_fd());
    let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client.addr)));
    if let Some(local) = client.local {
        let _ = digest.local_addr.set(Some(PeerAddr::Inet(local)));
    }
    digest
}
