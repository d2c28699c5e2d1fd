//! The TLS accept step: look at the first byte, then run the handshake, all before the
//! connection's deadline (`request_header_timeout` from accept). Whatever goes wrong ends here:
//! the reason is counted, the socket handed back to be closed ([`Unclosed`]), and no backend is
//! chosen, reserved or connected to.
//!
//! A TLS connection starts with a handshake record (content type 0x16). A client that speaks
//! plain HTTP to the TLS port starts with a method name instead: it gets a plaintext `400` that
//! says so, since that is the one mistake a person makes by hand (`http://` for `https://`).
//!
//! Behind a load balancer speaking the PROXY protocol, the header is read off the socket first
//! (`dataplane::inbound`), and that read may have taken the start of the ClientHello with it.
//! Those bytes are the first the check looks at and the first rustls reads: they are handed to
//! the connection and processed before the handshake goes on over the socket, as if they had
//! just arrived on it.

use std::io;

use rustls::AlertDescription;
use rustls::ServerConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

use super::Stream;

/// The content type of a TLS handshake record: the first byte of every ClientHello.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Most bytes of a plaintext request read (and dropped) before it is answered, so that closing
/// the socket does not reset the answer away.
const PLAINTEXT_DRAIN: usize = 16 * 1024;
const PLAINTEXT_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 61\r\nConnection: close\r\n\r\nthis port speaks TLS: use https:// or wss:// instead of http\n";

/// Why a connection was closed before its handshake completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It spoke plain HTTP (answered with a plaintext 400).
    #[error("plain HTTP on the TLS port")]
    PlaintextHttp,
    /// Its first byte was neither a TLS handshake record nor an HTTP method.
    #[error("not TLS")]
    NotTls,
    /// The handshake did not complete before the deadline.
    #[error("handshake not complete within request_header_timeout")]
    Timeout,
    /// The peer closed before the handshake completed.
    #[error("closed during the handshake")]
    Closed,
    /// No protocol version, cipher suite, key exchange group or signature scheme in common.
    #[error("no TLS parameters in common")]
    Incompatible,
    /// The client offered ALPN protocols, none of them `http/1.1`.
    #[error("no ALPN protocol in common (only http/1.1 is served)")]
    NoApplicationProtocol,
    /// The client refused the certificate (an alert such as `bad_certificate`, `unknown_ca`).
    #[error("the client refused the certificate")]
    CertificateRejected,
    /// Malformed or unexpected handshake messages, or another alert.
    #[error("TLS protocol error")]
    Protocol,
    /// The socket failed.
    #[error("socket error during the handshake")]
    Io,
}

impl Refusal {
    /// The label of `tidegate_tls_handshake_errors_total{reason}`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::PlaintextHttp => "plaintext_http",
            Self::NotTls => "not_tls",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Incompatible => "incompatible",
            Self::NoApplicationProtocol => "no_application_protocol",
            Self::CertificateRejected => "certificate_rejected",
            Self::Protocol => "protocol_error",
            Self::Io => "io_error",
        }
    }

    fn from_handshake(e: &io::Error) -> Self {
        let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof => Self::Closed,
                _ => Self::Io,
            };
        };
        use rustls::Error as E;
        match tls {
            E::PeerIncompatible(_) => Self::Incompatible,
            E::NoApplicationProtocol => Self::NoApplicationProtocol,
            E::AlertReceived(alert) if rejects_certificate(*alert) => Self::CertificateRejected,
            _ => Self::Protocol,
        }
    }
}

fn rejects_certificate(alert: AlertDescription) -> bool {
    use AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
    )
}

/// The socket of a connection refused before its handshake completed, still open: it closes
/// when this is dropped, so that the caller chooses when (the data plane closes it in a turn,
/// with the other refusals: `dataplane::turns`).
pub struct Unclosed {
    _socket: Box<dyn Send>,
}

impl Unclosed {
    fn new(socket: impl Send + 'static) -> Self {
        Self {
            _socket: Box::new(socket),
        }
    }
}

/// Runs the handshake on `tcp`, whose first bytes `already` were read off it, to be done by
/// `deadline`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    already: Vec<u8>,
    deadline: Instant,
) -> Result<Stream, (Refusal, Unclosed)> {
    let first = match already.first() {
        Some(&byte) => byte,
        None => match first_byte(&tcp, deadline).await {
            Ok(byte) => byte,
            Err(refusal) => return Err((refusal, Unclosed::new(tcp))),
        },
    };
    if first != HANDSHAKE_RECORD {
        let (refusal, tcp) = refuse_plaintext(tcp, first, deadline).await;
        return Err((refusal, Unclosed::new(tcp)));
    }
    let mut fed = Ok(());
    // Fallible: a failed handshake hands the socket back instead of closing it.
    let mut accept = acceptor
        .accept_with(tcp, |connection| fed = feed(connection, &already))
        .into_fallible();
    if let Err(e) = fed {
        return Err((Refusal::from_handshake(&e), Unclosed::new(accept)));
    }
    match timeout_at(deadline, &mut accept).await {
        Err(_) => Err((Refusal::Timeout, Unclosed::new(accept))),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err((e, tcp))) => Err((Refusal::from_handshake(&e), Unclosed::new(tcp))),
    }
}

/// The first byte of the connection, left on the socket.
async fn first_byte(tcp: &TcpStream, deadline: Instant) -> Result<u8, Refusal> {
    let mut first = [0u8; 1];
    match timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => Err(Refusal::Timeout),
        Ok(Ok(0)) => Err(Refusal::Closed),
        Ok(Err(_)) => Err(Refusal::Io),
        Ok(Ok(_)) => Ok(first[0]),
    }
}

/// Gives `connection` the bytes read off its socket before the handshake started, and
/// processes them: the handshake then sends what they call for before it reads the socket
/// again (the records only buffered would wait for a socket read that may never come).
fn feed(connection: &mut ServerConnection, mut already: &[u8]) -> io::Result<()> {
    while !already.is_empty() {
        if connection.read_tls(&mut already)? == 0 {
            // A close_notify among them: nothing more is read.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        connection
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(())
}

/// Answers a request that starts like HTTP (an upper-case method name) with a plaintext 400;
/// anything else is refused without a word. Hands the socket back, to be closed.
async fn refuse_plaintext(
    mut tcp: TcpStream,
    first: u8,
    deadline: Instant,
) -> (Refusal, TcpStream) {
    if !first.is_ascii_uppercase() {
        return (Refusal::NotTls, tcp);
    }
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < PLAINTEXT_DRAIN {
        match tcp.try_read(&mut chunk) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    let _ = timeout_at(deadline, async {
        tcp.write_all(PLAINTEXT_ANSWER).await?;
        tcp.shutdown().await
    })
    .await;
    (Refusal::PlaintextHttp, tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_answer_says_its_length() {
        let text = std::str::from_utf8(PLAINTEXT_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn handshake_errors_map_to_bounded_reasons() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let cases = [
            (
                wrap(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
                Refusal::CertificateRejected,
            ),
            (
                wrap(rustls::Error::PeerIncompatible(
                    rustls::PeerIncompatible::NoCipherSuitesInCommon,
                )),
                Refusal::Incompatible,
            ),
            (
                wrap(rustls::Error::NoApplicationProtocol),
                Refusal::NoApplicationProtocol,
            ),
            (wrap(rustls::Error::DecryptError), Refusal::Protocol),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof),
                Refusal::Closed,
            ),
            (io::Error::from(io::ErrorKind::ConnectionReset), Refusal::Io),
        ];
        for (error, want) in cases {
            assert_eq!(Refusal::from_handshake(&error), want, "{error}");
        }
    }
}
