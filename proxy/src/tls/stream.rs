//! A terminated TLS connection as pingora's transport (`pingora::protocols::IO`), so the
//! plain-HTTP path runs over TLS unchanged: pingora reads and writes plaintext, and the bytes
//! the proxy already read (the first request head) are served again first, as
//! `l4::Stream::rewind` does for plain TCP.
//!
//! pingora asks its transport for digests: the socket's (peer and local address: the client as
//! the data plane settled it, PROXY header included, given by the caller) and the TLS one
//! (version and cipher, which is also how the HTTP path knows the request came over TLS:
//! `session.digest().ssl_digest`). pingora's own TLS types are compiled out here (no TLS
//! feature of pingora is on), so [`Ssl::get_ssl`] has nothing to give and says `None`.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::Stream;

/// A TLS stream for pingora, replaying `rewind` before reading on.
#[derive(Debug)]
pub struct HttpIo {
    inner: Stream,
    rewind: Vec<u8>,
    rewound: usize,
    socket: Arc<SocketDigest>,
    ssl: Arc<SslDigest>,
    established: SystemTime,
}

impl HttpIo {
    /// Wraps `inner`, whose first bytes `already_read` have been read by the proxy; `socket`
    /// is the digest pingora reports for it (the data plane sets the client's address in it:
    /// the PROXY header's source, not necessarily the TCP peer).
    pub fn new(inner: Stream, already_read: Vec<u8>, socket: SocketDigest) -> Self {
        let connection = inner.get_ref().1;
        let socket = Arc::new(socket);
        let version = super::version_label(connection.protocol_version());
        let cipher = connection
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        let ssl = Arc::new(SslDigest::new(cipher, version, None, None, Vec::new()));
        Self {
            inner,
            rewind: already_read,
            rewound: 0,
            socket,
            ssl,
            established: SystemTime::now(),
        }
    }
}

impl AsyncRead for HttpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rewound < this.rewind.len() {
            let rest = &this.rewind[this.rewound..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.rewound += n;
            if this.rewound == this.rewind.len() {
                this.rewind = Vec::new();
                this.rewound = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HttpIo {
    async fn shutdown(&mut self) {
        // Sends close_notify, then the TCP FIN.
        let _ = AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for HttpIo {
    fn id(&self) -> UniqueIDType {
        self.inner.get_ref().0.as_raw_fd()
    }
}

impl Ssl for HttpIo {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        Some(Arc::clone(&self.ssl))
    }
}

impl GetTimingDigest for HttpIo {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest {
            established_ts: self.established,
            ..TimingDigest::default()
        })]
    }
}

impl GetProxyDigest for HttpIo {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for HttpIo {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(Arc::clone(&self.socket))
    }
}

#[async_trait]
impl Peek for HttpIo {}
