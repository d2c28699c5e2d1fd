//! Plain HTTP, handed to pingora's HTTP proxy: requests are routed to the least-loaded backend
//! and counted in flight; WebSocket upgrades that arrive later on a kept-alive connection are
//! handled here too, with the same reservation rules as the fast path in [`super::tunnel`]
//! (pingora's tunnel buffers them, so they cost more memory; first requests never come here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};
use tidegate_common::{Backend, InflightRequest, Reservation};

use super::Proxy;
use super::client::Client;
use super::forwarded;
use super::head::Head;

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
}

/// Hands a connection whose first request head was already read to pingora's HTTP proxy.
pub async fn hand_over(
    app: &Arc<HttpProxy>,
    stream: impl Client,
    head: Head,
    shutdown: &ShutdownWatch,
) {
    let stream = stream.into_pingora(&head.bytes);
    drop(head);
    let mut next = app.process_new(stream, shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, shutdown).await;
    }
}

fn is_websocket(session: &Session) -> bool {
    let req = session.req_header();
    let has = |name: http::header::HeaderName, token: &str| {
        req.headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    req.method == http::Method::GET
        && has(http::header::UPGRADE, "websocket")
        && has(http::header::CONNECTION, "upgrade")
}

#[async_trait]
impl ProxyHttp for HttpFallback {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.websocket = is_websocket(session);
        if !ctx.websocket {
            return Ok(false);
        }
        let config = self.proxy.config.load_full();
        match self.proxy.table.reserve(config.queue_policy(), &[]).await {
            Ok(r) => {
                ctx.reservation = Some(r);
                Ok(false)
            }
            Err(why) => {
                self.proxy
                    .metrics
                    .rejected
                    .with_label_values(&[why.metric_label()])
                    .inc();
                let mut resp = ResponseHeader::build(503, Some(2))?;
                resp.insert_header("Retry-After", config.retry_after_secs().to_string())?;
                resp.insert_header("Content-Length", "0")?;
                session.write_response_header(Box::new(resp), true).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
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
        let mut peer = HttpPeer::new(backend.address(), false, String::new());
        ctx.backend = Some(backend);
        peer.options.connection_timeout = Some(self.proxy.config.load().connect_timeout);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let config = self.proxy.config.load();
        if let Some(backend) = ctx.backend.take() {
            let failures = &self.proxy.metrics.connect_failures;
            failures.with_label_values(&[backend.label()]).inc();
            self.proxy
                .table
                .eject(&backend, Instant::now(), config.eject_for);
            ctx.tried.push(backend.address());
        }
        ctx.reservation = None;
        ctx.inflight = None;
        if ctx.tried.len() < config.connect_attempts as usize {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A TLS transport reports its digest (crate::tls::stream); a plain one has none.
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let proto = if tls { "https" } else { "http" };
        upstream_request.insert_header(forwarded::HEADER, proto)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (true, Some(r)) = (
            ctx.websocket && resp.status.as_u16() == 101,
            ctx.reservation.as_mut(),
        ) {
            r.promote();
            // pingora's 60 s downstream read timeout would otherwise cut idle WebSockets.
            session.set_read_timeout(Some(self.proxy.config.load().websocket_idle_timeout));
        }
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
