//! Reading an HTTP/1.x message head off a socket, bounded in size and time, and deciding
//! whether a request is a WebSocket upgrade.
//!
//! The buffer grows from 1 KiB only as bytes arrive, and nothing is allocated before the first
//! byte: a connection that sits silent costs no buffer.

use std::io;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::client::Client;

/// Most header lines parsed in one head.
const MAX_HEADERS: usize = 100;
const FIRST_READ: usize = 1024;

/// Why no request head could be read. Each maps to one status code (or none).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not valid HTTP/1.x → 400.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// Longer than the limit, or too many header lines → 431.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// Not complete within the header timeout → 408.
    #[error("request head not complete within {0:?}")]
    Timeout(Duration),
    /// The peer closed before sending a whole head: nobody to answer.
    #[error("connection closed before a complete head")]
    Closed,
    /// The socket failed.
    #[error("reading the head failed: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The status to answer with, if any.
    pub fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::Malformed(_) => Some((400, "Bad Request")),
            Self::TooLarge(_) => Some((431, "Request Header Fields Too Large")),
            Self::Timeout(_) => Some((408, "Request Timeout")),
            Self::Closed | Self::Io(_) => None,
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::TooLarge(_) => "header_too_large",
            Self::Timeout(_) => "header_timeout",
            Self::Closed => "closed_early",
            Self::Io(_) => "client_io_error",
        }
    }
}

/// A complete head, and whatever followed it in the same reads.
#[derive(Debug)]
pub struct Head {
    /// Every byte read so far: the head, then possibly the start of what follows it.
    pub bytes: Vec<u8>,
    /// Length of the head within `bytes`.
    pub len: usize,
}

/// The parts of a request head routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// An HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade`.
    pub websocket: bool,
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/metrics?x=1`.
    pub target: String,
}

/// Reads a request head within `timeout` and `max` bytes and says whether it is a WebSocket
/// upgrade.
pub async fn read_request<S: Client>(
    stream: &mut S,
    max: usize,
    timeout: Duration,
) -> Result<(Head, Request), Error> {
    let parse = |buf: &[u8]| -> Result<Option<(usize, Request)>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => Ok(Some((len, request(&req)))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(Error::TooLarge(max)),
            Err(_) => Err(Error::Malformed("not an HTTP/1.x request")),
        }
    };
    read_head(stream, max, timeout, parse).await
}

/// The parts of a response head the proxy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, if given.
    pub content_length: Option<u64>,
}

/// Reads a response head within `timeout`.
pub async fn read_response(
    stream: &mut TcpStream,
    max: usize,
    timeout: Duration,
) -> Result<(Head, Response), Error> {
    let parse = |buf: &[u8]| -> Result<Option<(usize, Response)>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let length = header(resp.headers, "content-length")
                    .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
                let info = Response {
                    status: resp.code.unwrap_or(0),
                    content_length: length,
                };
                Ok(Some((len, info)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(Error::Malformed("not an HTTP/1.x response")),
        }
    };
    read_head(stream, max, timeout, parse).await
}

async fn read_head<S: Client, T>(
    stream: &mut S,
    max: usize,
    timeout: Duration,
    parse: impl Fn(&[u8]) -> Result<Option<(usize, T)>, Error>,
) -> Result<(Head, T), Error> {
    let work = async {
        stream.ready().await?;
        let mut bytes = Vec::with_capacity(FIRST_READ.min(max));
        loop {
            if bytes.len() == bytes.capacity() {
                bytes.reserve((bytes.capacity()).min(max.saturating_sub(bytes.len()).max(1)));
            }
            if stream.read_buf(&mut bytes).await? == 0 {
                return Err(Error::Closed);
            }
            if let Some((len, parsed)) = parse(&bytes)? {
                return Ok((Head { bytes, len }, parsed));
            }
            if bytes.len() >= max {
                return Err(Error::TooLarge(max));
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

fn request(req: &httparse::Request<'_, '_>) -> Request {
    let has_token = |name: &str, token: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| {
                h.value
                    .split(|&c| c == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
    };
    let websocket = req.method == Some("GET")
        && req.version == Some(1)
        && has_token("upgrade", "websocket")
        && has_token("connection", "upgrade");
    Request {
        websocket,
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
    }
}

fn header<'a>(headers: &'a [httparse::Header<'_>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Request {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        request(&req)
    }

    #[test]
    fn websocket_upgrades_are_told_from_other_upgrades() {
        let ws = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert!(parsed(ws).websocket);
        let h2c = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        assert!(!parsed(h2c).websocket);
        let no_conn = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        assert!(!parsed(no_conn).websocket);
        let post = "POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert!(!parsed(post).websocket);
        let http10 = "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert!(!parsed(http10).websocket);
    }
}
