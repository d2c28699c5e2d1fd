//! The WebSocket fast path: route the upgrade with a reservation ([`connect`] tries other
//! backends if one refuses), pass the handshake through ([`handshake`]), promote the
//! reservation on the `101`, then relay the [`Tunnel`] with [`super::relay`]. The reservation
//! lives in this future and then in the tunnel, so its `Drop` releases the slot on every way
//! out — including the runtime dropping the future at shutdown.
//!
//! The backend gets a rewritten head ([`super::head::rewrite`]) and nothing else before its
//! answer: bytes the client sent after its head are held until the `101` and go with the
//! connection otherwise, so no second request can ride in behind a refused upgrade.

mod connect;
mod handshake;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tidegate_common::{Rejected, Reservation};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Instrument, Span, debug, debug_span};

use super::client::{Client, Forwarding};
use super::connections::Cause;
use super::frames::Frames;
use super::head::{Head, rewrite};
use super::relay::{End, Relay};
use super::transport::Transport;
use super::{Proxy, respond};
use crate::config::{Config, SendProxyProtocol};
use connect::NoBackend;
pub(crate) use connect::is_out_of_descriptors;
use handshake::Answer;

/// Routes one WebSocket upgrade request whose head has been read and passes its handshake:
/// the upgraded connection, ready to [`relay`](Tunnel::relay), or `None` once the client has
/// been answered otherwise (or has left).
pub async fn serve<C: Transport>(
    proxy: &Proxy,
    config: &Config,
    mut client: C,
    request: Head,
    who: &Client,
) -> Option<Tunnel<C>> {
    // Debug level, like every event in it: at the default `info` a span held for the life of
    // every WebSocket costs the subscriber's registry about 490 bytes per idle WebSocket
    // (`benches/README.md`, "Where an idle WebSocket's bytes go").
    let span = debug_span!("websocket", peer = %who.addr, backend = tracing::field::Empty);
    async {
        let (reservation, backend) = route(proxy, config, &mut client).await?;
        tracing::Span::current().record("backend", reservation.backend().label());
        let sent = upstream_head(config, &request, who, client.socket());
        let ends = (client, backend);
        upgrade(proxy, config, ends, reservation, sent, request).await
    }
    .instrument(span)
    .await
}

/// An upgraded WebSocket, its handshake done: the two sockets, the promoted reservation, where
/// the frames stand each way, and the timeouts of the config it was accepted under — what the
/// relay needs and nothing of the handshake. The connection's task runs everything before in a
/// boxed future that is freed here, so an idle WebSocket's task holds room for the relay only
/// (`docs/architecture.md`, "No buffer while idle").
pub struct Tunnel<C> {
    client: C,
    backend: TcpStream,
    reservation: Reservation,
    /// Client → backend, backend → client.
    frames: (Frames, Frames),
    /// `websocket_idle_timeout`, `websocket_close_timeout`.
    timeouts: (Duration, Duration),
    /// The `websocket` span of its handshake, for the relay's own events.
    span: Span,
}

impl<C: Transport> Tunnel<C> {
    /// Relays until the WebSocket ends (tracked meanwhile so that the drain can close it), then
    /// counts how it ended and gives its slot back.
    ///
    /// Built from combinators rather than an `async` block: the relay's future is held in place,
    /// where awaiting it inside a block would also keep room for it moved out of the block's
    /// captures — every idle WebSocket's task carries this future.
    pub fn relay(self, proxy: &Proxy) -> impl Future<Output = ()> {
        let Self {
            client,
            backend,
            reservation,
            frames: (up, down),
            timeouts: (idle, close),
            span,
        } = self;
        let started = tokio::time::Instant::now();
        let tracked = proxy.connections.track(reservation.backend());
        let relaying = Relay::new(idle)
            .after(up, down)
            .closed_by(Arc::clone(tracked.signal()), close)
            .run(client, backend);
        relaying
            .map(move |end| {
                let cause = tracked.signal().close_cause();
                finish(proxy, end, started.elapsed(), cause);
                drop(tracked);
                drop(reservation);
            })
            .instrument(span)
    }
}

/// What the backend gets before its answer: the optional PROXY header and the rewritten head.
fn upstream_head(config: &Config, request: &Head, who: &Client, socket: &TcpStream) -> Vec<u8> {
    let forwarding = Forwarding::new(config, who);
    let proxy_header = match config.backends.send_proxy_protocol {
        SendProxyProtocol::V2 => {
            let local = who.local.or_else(|| socket.local_addr().ok());
            Some((who.addr, local.unwrap_or(who.addr)))
        }
        SendProxyProtocol::Off => None,
    };
    rewrite::websocket(request.head(), proxy_header, forwarding.as_ref())
}

/// Takes a slot (waiting in the queue if every backend is full, for as long as the client is
/// there) and connects to its backend; `None` once the client has been answered with a refusal
/// (503) or a 502, or has left.
async fn route(
    proxy: &Proxy,
    config: &Config,
    client: &mut impl Transport,
) -> Option<(Reservation, TcpStream)> {
    let queued = tokio::time::Instant::now();
    let reserved = tokio::select! {
        biased;
        r = proxy.table.reserve(config.queue_policy(), &[]) => r,
        () = left(client.socket()) => {
            debug!("the client left while its upgrade waited for a slot");
            proxy.metrics.bad_requests.with_label_values(&["left_in_queue"]).inc();
            return None;
        }
    };
    let reservation = match reserved {
        Ok(r) => r,
        Err(why) => return reject(proxy, config, client, why).await,
    };
    let waited = queued.elapsed().as_secs_f64();
    proxy.metrics.queue_wait.observe(waited);
    match connect::connect(proxy, config, reservation).await {
        Ok(connected) => Some(connected),
        Err(NoBackend::Unreachable) => {
            let reason = "backends_unreachable";
            proxy.metrics.rejected.with_label_values(&[reason]).inc();
            let body = "no backend accepted the connection\n";
            respond::simple(client, 502, "Bad Gateway", &[], body).await;
            None
        }
        Err(NoBackend::OutOfDescriptors) => {
            let body = "the proxy is out of file descriptors; retry later\n";
            refuse(proxy, config, client, "out_of_descriptors", body).await
        }
    }
}

/// Resolves when the client closes or fails. Bytes from it (a client should send none before
/// the `101`) end the watch without being read: then it waits like any other. Over TLS the
/// socket underneath is watched, so a client that leaves with a `close_notify` before its FIN
/// has sent bytes and waits out the queue; one that just closes is seen at once.
async fn left(client: &TcpStream) {
    let mut probe = [0u8; 1];
    if let Ok(1..) = client.peek(&mut probe).await {
        std::future::pending::<()>().await;
    }
}

/// The handshake through the connected backend; on its `101`, the tunnel to relay. The
/// reservation is promoted on the `101`; on any other answer it is given back before the
/// client is answered.
async fn upgrade<C: Transport>(
    proxy: &Proxy,
    config: &Config,
    (mut client, mut backend): (C, TcpStream),
    mut reservation: Reservation,
    sent: Vec<u8>,
    request: Head,
) -> Option<Tunnel<C>> {
    let chosen = Arc::clone(reservation.backend());
    let count = |result| {
        let labels = [chosen.label(), result];
        proxy.metrics.upgrades.with_label_values(&labels).inc()
    };
    // What the client sent after its head is held until the `101` and passed then (below):
    // the relay's tracker starts after it. What came in the backend's read after its answer
    // has passed with the answer.
    let up = Frames::after(request.tail());
    let down;
    // The rewritten head is freed once sent.
    match handshake::exchange(config, &mut backend, sent).await {
        Answer::Upgraded(response) => {
            reservation.promote();
            down = Frames::after(&response.bytes[response.len..]);
            count("ok");
            if client.write_all(&response.bytes).await.is_err() {
                return None; // the client left during the handshake; the reservation drops here
            }
        }
        Answer::Refused(response) => {
            count("refused");
            drop(reservation);
            let timeout = config.upstream_handshake_timeout;
            handshake::forward_refusal(client, backend, response, timeout).await;
            return None;
        }
        Answer::Failed { result, status } => {
            count(result);
            drop(reservation);
            let (code, reason, body) = status;
            respond::simple(&mut client, code, reason, &[], body).await;
            return None;
        }
    }
    // What the client sent after its head, held until now.
    if !handshake::pass_held(config, &mut backend, request).await {
        return None;
    }
    Some(Tunnel {
        client,
        backend,
        reservation,
        frames: (up, down),
        timeouts: (
            config.websocket_idle_timeout,
            config.websocket_close_timeout,
        ),
        span: Span::current(),
    })
}

async fn reject<T>(
    proxy: &Proxy,
    config: &Config,
    client: &mut impl Transport,
    why: Rejected,
) -> Option<T> {
    debug!(reason = why.metric_label(), "upgrade refused");
    let body = format!("no capacity for a new WebSocket: {why}; retry later\n");
    refuse(proxy, config, client, why.metric_label(), &body).await
}

/// Answers 503 with `Retry-After` and counts it under `reason`.
async fn refuse<T>(
    proxy: &Proxy,
    config: &Config,
    client: &mut impl Transport,
    reason: &str,
    body: &str,
) -> Option<T> {
    proxy.metrics.rejected.with_label_values(&[reason]).inc();
    let retry = [("Retry-After", config.retry_after_secs().to_string())];
    respond::simple(client, 503, "Service Unavailable", &retry, body).await;
    None
}

/// Counts how the WebSocket ended, and the close the proxy asked for, if any.
fn finish(proxy: &Proxy, end: End, lived: Duration, closed_for: Option<Cause>) {
    if let Some(cause) = closed_for {
        let closes = &proxy.metrics.websocket_closes;
        closes.with_label_values(&[cause.as_str()]).inc();
    }
    let (end, seconds) = (end.as_str(), lived.as_secs_f64());
    debug!(end, seconds, "websocket closed");
    proxy
        .metrics
        .connection_duration
        .with_label_values(&[end])
        .observe(seconds);
}
