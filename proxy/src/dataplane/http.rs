//! Plain HTTP, handed to pingora's HTTP proxy: requests are routed to the least-loaded backend
//! and counted in flight; WebSocket upgrades that arrive later on a kept-alive connection (or
//! every upgrade, with `websocket_fast_path: false`) are handled here too, with the same
//! reservation rules as the fast path in [`super::tunnel`] (pingora's tunnel buffers them, so
//! they cost more memory).
//!
//! The first head of every connection was read and checked by tidegate before it got here;
//! later heads on a kept-alive connection are checked by the same rules in `request_filter`.
//! A `101` reaches the client only for a request that holds a reservation. [`upstream`] holds
//! the backend side: peer options, forwarding headers, the PROXY header.

pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};
use tidegate_common::{Backend, InflightRequest, Reservation};

use super::Proxy;
use super::client::{Client, Forwarding, Proto};
use super::head::{self, Head, check};
use super::transport::Transport;

/// The `ProxyHttp` behind the traffic listener's plain-HTTP path.
pub struct HttpFallback {
    proxy: Arc<Proxy>,
}

/// pingora's HTTP proxy app over [`HttpFallback`].
pub type HttpProxy = pingora::proxy::HttpProxy<HttpFallback>;

impl HttpFallback {
    /// Routes through `proxy`'s backend table.
    pub fn new(proxy: Arc<Proxy>) -> Self {
        Self { proxy }
    }
}

/// Per-request state; its guards release the counts when pingora drops it, on every path.
#[derive(Default)]
pub struct RequestCtx {
    websocket: bool,
    reservation: Option<Reservation>,
    inflight: Option<InflightRequest>,
    tried: Vec<SocketAddr>,
    backend: Option<Arc<Backend>>,
    /// A connect failed because this process is out of descriptors: answer 503, blame nobody.
    out_of_descriptors: bool,
}

/// Hands a connection whose first request head was already read to pingora's HTTP proxy, with
/// `client` as the address pingora reports for it.
pub async fn hand_over(
    app: &Arc<HttpProxy>,
    stream: impl Transport,
    head: Head,
    client: &Client,
    shutdown: &ShutdownWatch,
) {
    let stream = stream.into_pingora(&head.bytes, client);
    drop(head);
    let mut next = app.process_new(stream, shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, shutdown).await;
    }
}

/// The client as [`hand_over`] described it to pingora; `https` when the stream pingora reads
/// carries a TLS digest.
fn client_of(session: &Session) -> Option<Client> {
    let addr = *session.client_addr()?.as_inet()?;
    let local = session.server_addr().and_then(|a| a.as_inet().copied());
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    Some(Client {
        addr,
        local,
        proto: if tls { Proto::Https } else { Proto::Http },
    })
}

impl HttpFallback {
    /// Checks a later head of a kept-alive connection by the first head's rules; `Err` is the
    /// reason it is refused.
    fn check(session: &Session) -> std::result::Result<bool, check::Invalid> {
        let Some(h1) = session.downstream_session.as_http1() else {
            return Ok(false);
        };
        let raw = h1.get_headers_raw_bytes();
        let mut headers = [httparse::EMPTY_HEADER; head::MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&raw) {
            Ok(httparse::Status::Complete(len)) => Ok(check::request(&req, &raw[..len])?.websocket),
            // pingora parsed it (it may have escaped its target); nothing more to check here.
            _ => Ok(false),
        }
    }

    /// Answers `code` with `Connection: close` and ends the request.
    async fn answer(
        session: &mut Session,
        code: u16,
        extra: Option<(&str, String)>,
    ) -> Result<bool> {
        session.set_keepalive(None);
        let mut resp = ResponseHeader::build(code, Some(3))?;
        if let Some((name, value)) = extra {
            resp.insert_header(name.to_owned(), value)?;
        }
        resp.insert_header("Content-Length", "0")?;
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }

    /// Takes a slot for an upgrade, waiting in the queue while the client is there.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let config = self.proxy.config.load_full();
        let reserved = tokio::select! {
            biased;
            r = self.proxy.table.reserve(config.queue_policy(), &[]) => r,
            _ = session.downstream_session.read_body_or_idle(true) => {
                let left = &self.proxy.metrics.bad_requests;
                left.with_label_values(&["left_in_queue"]).inc();
                return Error::e_explain(ErrorType::ConnectionClosed, "client left while queued")
                    .map_err(Error::into_down);
            }
        };
        match reserved {
            Ok(r) => {
                ctx.reservation = Some(r);
                Ok(false)
            }
            Err(why) => {
                let rejected = &self.proxy.metrics.rejected;
                rejected.with_label_values(&[why.metric_label()]).inc();
                let retry = ("Retry-After", config.retry_after_secs().to_string());
                Self::answer(session, 503, Some(retry)).await
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for HttpFallback {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.websocket = match Self::check(session) {
            Ok(websocket) => websocket,
            Err(why) => {
                let bad = &self.proxy.metrics.bad_requests;
                bad.with_label_values(&[why.metric_label()]).inc();
                return Self::answer(session, 400, None).await;
            }
        };
        if !ctx.websocket {
            return Ok(false);
        }
        // Interim answers (100, 103) before the 101 are not passed on: WebSocket clients take
        // the first answer for the handshake's (as on the fast path).
        session.set_ignore_info_resp(true);
        self.admit(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let table = &self.proxy.table;
        let now = Instant::now();
        let backend = if ctx.websocket {
            if ctx.reservation.is_none() {
                ctx.reservation = table.try_reserve(now, &ctx.tried).ok();
            }
            ctx.reservation.as_ref().map(|r| Arc::clone(r.backend()))
        } else {
            ctx.inflight = table.route_request(now, &ctx.tried);
            ctx.inflight.as_ref().map(|r| Arc::clone(r.backend()))
        };
        let backend = backend
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no backend with room"))?;
        let config = self.proxy.config.load();
        let peer = upstream::peer(&config, backend.address(), client_of(session).as_ref());
        ctx.backend = Some(backend);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let config = self.proxy.config.load();
        let forwarding = client_of(session).and_then(|c| Forwarding::new(&config, &c));
        match forwarding {
            Some(f) => upstream::forward(upstream_request, &f),
            None => Ok(()),
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.reservation = None;
        ctx.inflight = None;
        if upstream::out_of_descriptors(&e) {
            // The proxy's own trouble: the backend is fine, keep it in, do not retry.
            ctx.out_of_descriptors = true;
            ctx.backend = None;
            return e;
        }
        let config = self.proxy.config.load();
        if let Some(backend) = ctx.backend.take() {
            let failures = &self.proxy.metrics.connect_failures;
            failures.with_label_values(&[backend.label()]).inc();
            self.proxy
                .table
                .eject(&backend, Instant::now(), config.eject_for);
            ctx.tried.push(backend.address());
        }
        if ctx.tried.len() < config.connect_attempts as usize {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = if ctx.out_of_descriptors {
            let reason = "out_of_descriptors";
            self.proxy
                .metrics
                .rejected
                .with_label_values(&[reason])
                .inc();
            let retry = self.proxy.config.load().retry_after_secs().to_string();
            let _ = Self::answer(session, 503, Some(("Retry-After", retry))).await;
            503
        } else {
            let code = upstream::error_status(e);
            if code > 0 {
                let _ = session.respond_error(code).await;
            }
            code
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.status.as_u16() != 101 {
            if ctx.websocket && !resp.status.is_informational() {
                // A refused upgrade gives its slot back before the refusal is passed on, and
                // ends its connection, as on the fast path: bytes the client pipelined behind
                // it are dropped, not read as the next request.
                ctx.reservation = None;
                session.set_keepalive(None);
            }
            return Ok(());
        }
        let Some(r) = ctx.reservation.as_mut().filter(|_| ctx.websocket) else {
            // No slot was taken for this request: its 101 must not become an uncounted tunnel.
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "101 to a request without a slot",
            )
            .map_err(Error::into_up);
        };
        r.promote();
        // pingora's 60 s downstream read timeout would otherwise cut idle WebSockets.
        session.set_read_timeout(Some(self.proxy.config.load().websocket_idle_timeout));
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let Some(backend) = &ctx.backend else { return };
        let label = backend.label();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if ctx.websocket {
            let result = if status == 101 { "ok" } else { "refused" };
            self.proxy
                .metrics
                .upgrades
                .with_label_values(&[label, result])
                .inc();
        } else {
            let class = match status {
                100..=599 => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(status / 100 - 1)],
                _ => "none",
            };
            self.proxy
                .metrics
                .http_requests
                .with_label_values(&[label, class])
                .inc();
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // Idle WebSockets ending by timeout are normal; they are counted, not logged as errors.
        matches!(error.etype(), ErrorType::ReadTimedout)
    }
}
