//! The rules a complete request head must follow before anything routes on it, on both paths:
//! tidegate's reader applies them to every connection's first head, pingora's path to the later
//! heads of a kept-alive connection (`http::HttpFallback::request_filter`).
//!
//! They close the gaps through which one request could be read two ways by the proxy and the
//! backend (request smuggling): framing that disagrees with itself, bare-LF line endings that
//! some parsers accept and others do not, an upgrade that carries a body, a `Connection` header
//! that would have the proxy strip `Host` or the forwarding headers.

use super::Request;

/// Most tokens across `Connection` headers (pingora's path allows 9).
const MAX_CONNECTION_TOKENS: usize = 16;

/// Headers a `Connection` header may not nominate for removal.
const PROTECTED: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Why a complete head is refused with 400; each is counted under its own label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A line ends in LF without CR.
    #[error("a line ends in a bare LF (CRLF required)")]
    BareLf,
    /// HTTP/1.1 without `Host`.
    #[error("no Host header")]
    MissingHost,
    /// More than one `Host`.
    #[error("more than one Host header")]
    DuplicateHost,
    /// `Content-Length` with `Transfer-Encoding`, differing or invalid `Content-Length`s, or a
    /// `Transfer-Encoding` that is not chunked last (or in HTTP/1.0).
    #[error("conflicting or invalid message framing (Content-Length / Transfer-Encoding)")]
    BadFraming,
    /// A WebSocket upgrade with `Content-Length` > 0 or any `Transfer-Encoding`.
    #[error("a WebSocket upgrade request must not have a body")]
    UpgradeWithBody,
    /// `Connection` names a protected header, a non-token, or too many tokens.
    #[error("invalid Connection header")]
    BadConnectionHeader,
}

impl Invalid {
    /// A bounded label for `tidegate_bad_requests_total{reason}`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::BareLf => "bare_lf",
            Self::MissingHost => "missing_host",
            Self::DuplicateHost => "duplicate_host",
            Self::BadFraming => "bad_framing",
            Self::UpgradeWithBody => "upgrade_with_body",
            Self::BadConnectionHeader => "bad_connection_header",
        }
    }
}

/// What the headers say, gathered in one pass.
#[derive(Default)]
struct Facts {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    upgrade_websocket: bool,
    connection_tokens: usize,
}

/// Checks a parsed request whose head is `head` and says whether it is a WebSocket upgrade:
/// any HTTP/1.1 request with `Upgrade: websocket`, whatever its method or `Connection` header
/// (pingora forwards such a request as an upgrade; it must take a slot either way).
pub fn request(req: &httparse::Request<'_, '_>, head: &[u8]) -> Result<Request, Invalid> {
    if has_bare_lf(head) {
        return Err(Invalid::BareLf);
    }
    let http11 = req.version == Some(1);
    let mut facts = Facts::default();
    for h in req.headers.iter() {
        facts.add(h)?;
    }
    match facts.hosts {
        0 if http11 => return Err(Invalid::MissingHost),
        0 | 1 => {}
        _ => return Err(Invalid::DuplicateHost),
    }
    if facts.transfer_encoding && (facts.content_length.is_some() || !facts.chunked_last || !http11)
    {
        return Err(Invalid::BadFraming);
    }
    let websocket = http11 && facts.upgrade_websocket;
    if websocket && (facts.transfer_encoding || facts.content_length.unwrap_or(0) > 0) {
        return Err(Invalid::UpgradeWithBody);
    }
    Ok(Request {
        websocket,
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
    })
}

impl Facts {
    fn add(&mut self, h: &httparse::Header<'_>) -> Result<(), Invalid> {
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("host") {
            self.hosts += 1;
        } else if is("content-length") {
            for token in tokens(h.value) {
                let length = content_length(token).ok_or(Invalid::BadFraming)?;
                if self.content_length.is_some_and(|l| l != length) {
                    return Err(Invalid::BadFraming);
                }
                self.content_length = Some(length);
            }
        } else if is("transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(last) = tokens(h.value).last() {
                self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if is("upgrade") {
            self.upgrade_websocket |= has_token(h.value, "websocket");
        } else if is("connection") {
            for token in tokens(h.value) {
                self.connection_tokens += 1;
                let protected = PROTECTED
                    .iter()
                    .any(|p| token.eq_ignore_ascii_case(p.as_bytes()));
                if protected
                    || !token.iter().copied().all(is_tchar)
                    || self.connection_tokens > MAX_CONNECTION_TOKENS
                {
                    return Err(Invalid::BadConnectionHeader);
                }
            }
        }
        Ok(())
    }
}

/// The non-empty, trimmed, comma-separated elements of a header value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&c| c == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// A `Content-Length` value: digits only (no sign, no spaces), at most 19 of them.
fn content_length(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 19 || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// An HTTP `token` character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<Request, Invalid> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = req.parse(raw.as_bytes()) else {
            panic!("does not parse: {raw:?}");
        };
        request(&req, &raw.as_bytes()[..len])
    }

    fn websocket(raw: &str) -> bool {
        check(raw).unwrap().websocket
    }

    #[test]
    fn every_http11_request_with_upgrade_websocket_is_an_upgrade() {
        let ws = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert!(websocket(ws));
        for connection in ["keep-alive", "close", "x-other"] {
            let raw = format!(
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: {connection}\r\n\r\n"
            );
            assert!(websocket(&raw), "{connection}");
        }
        assert!(websocket(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(websocket(
            "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, websocket\r\n\r\n"
        ));
        assert!(!websocket(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(!websocket(
            "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        ));
    }

    #[test]
    fn smuggling_shapes_are_refused_each_with_its_reason() {
        let cases = [
            ("GET / HTTP/1.1\nHost: x\n\n", Invalid::BareLf),
            ("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", Invalid::BareLf),
            ("GET / HTTP/1.1\r\nX: y\r\n\r\n", Invalid::MissingHost),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Invalid::DuplicateHost,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Invalid::BadFraming,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n",
                Invalid::UpgradeWithBody,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n",
                Invalid::UpgradeWithBody,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\n\r\n",
                Invalid::BadConnectionHeader,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
                Invalid::BadConnectionHeader,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: \"x\"\r\n\r\n",
                Invalid::BadConnectionHeader,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(check(raw).unwrap_err(), want, "{raw:?}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: {}\r\n\r\n",
            vec!["a"; 17].join(",")
        );
        assert_eq!(check(&many).unwrap_err(), Invalid::BadConnectionHeader);
    }

    #[test]
    fn well_framed_requests_pass() {
        for raw in [
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 0\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        ] {
            assert!(check(raw).is_ok(), "{raw:?}");
        }
    }
}
