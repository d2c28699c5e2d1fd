//! The WebSocket path: route the upgrade with a reservation, connect (trying other backends if
//! one refuses), pass the handshake through untouched, promote the reservation on the 101, then
//! relay with [`crate::relay`]. The reservation lives in this future, so its `Drop` releases the
//! slot on every way out — including the runtime dropping the future at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_common::{Rejected, Reservation};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span};

use crate::config::Config;
use crate::head::{self, Head, HeadError};
use crate::relay::{self, RelayEnd};
use crate::respond;
use crate::shared::Shared;

/// Largest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Serves one WebSocket upgrade request whose head has been read.
pub async fn serve(
    shared: &Shared,
    config: &Config,
    mut client: TcpStream,
    request: Head,
    peer: SocketAddr,
) {
    let span = info_span!("websocket", %peer, backend = tracing::field::Empty);
    async {
        let queued = tokio::time::Instant::now();
        let reservation = match shared.table.reserve(config.queue_policy(), &[]).await {
            Ok(r) => r,
            Err(why) => return reject(shared, config, &mut client, why).await,
        };
        shared
            .metrics
            .queue_wait
            .observe(queued.elapsed().as_secs_f64());
        let (reservation, backend) = match connect(shared, config, reservation).await {
            Ok(connected) => connected,
            Err(NoBackend::Unreachable) => {
                shared
                    .metrics
                    .rejected
                    .with_label_values(&["backends_unreachable"])
                    .inc();
                let body = "no backend accepted the connection\n";
                return respond::simple(&mut client, 502, "Bad Gateway", &[], body).await;
            }
            Err(NoBackend::OutOfDescriptors) => {
                let body = "the proxy is out of file descriptors; retry later\n";
                return refuse(shared, config, &mut client, "out_of_descriptors", body).await;
            }
        };
        tracing::Span::current().record("backend", reservation.backend().label());
        handshake(shared, config, client, backend, reservation, request).await;
    }
    .instrument(span)
    .await
}

async fn reject(shared: &Shared, config: &Config, client: &mut TcpStream, why: Rejected) {
    debug!(reason = why.metric_label(), "upgrade refused");
    let body = format!("no capacity for a new WebSocket: {why}; retry later\n");
    refuse(shared, config, client, why.metric_label(), &body).await;
}

/// Answers 503 with `Retry-After` and counts it under `reason`.
async fn refuse(
    shared: &Shared,
    config: &Config,
    client: &mut TcpStream,
    reason: &str,
    body: &str,
) {
    shared.metrics.rejected.with_label_values(&[reason]).inc();
    let retry = [("Retry-After", config.retry_after_secs().to_string())];
    respond::simple(client, 503, "Service Unavailable", &retry, body).await;
}

/// Connects to the reserved backend; on failure ejects it, releases the slot and tries the next
/// least-loaded backend, up to `connect_attempts` backends.
async fn connect(
    shared: &Shared,
    config: &Config,
    first: Reservation,
) -> Result<(Reservation, TcpStream), NoBackend> {
    let mut reservation = first;
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let addr = reservation.backend().address();
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((reservation, stream));
            }
            // Out of descriptors is the proxy's own trouble: the backend is fine, keep it in.
            Ok(Err(e)) if is_out_of_descriptors(&e) => return Err(NoBackend::OutOfDescriptors),
            Ok(Err(e)) => debug!(backend = %addr, error = %e, "connect failed"),
            Err(_) => debug!(backend = %addr, "connect timed out"),
        }
        let label = reservation.backend().label();
        shared
            .metrics
            .connect_failures
            .with_label_values(&[label])
            .inc();
        shared
            .metrics
            .upgrades
            .with_label_values(&[label, "connect_error"])
            .inc();
        shared.table.eject(
            reservation.backend(),
            std::time::Instant::now(),
            config.eject_for,
        );
        tried.push(addr);
        drop(reservation);
        if tried.len() >= config.connect_attempts as usize {
            return Err(NoBackend::Unreachable);
        }
        reservation = shared
            .table
            .try_reserve(std::time::Instant::now(), &tried)
            .map_err(|_| NoBackend::Unreachable)?;
    }
}

/// Why no backend connection could be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoBackend {
    /// Every backend tried refused or timed out (they are ejected) → 502.
    Unreachable,
    /// The proxy itself is out of file descriptors (EMFILE / ENFILE) → 503, nobody ejected.
    OutOfDescriptors,
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// Passes the client's head to the backend, the backend's answer to the client, and relays
/// after a 101.
async fn handshake(
    shared: &Shared,
    config: &Config,
    mut client: TcpStream,
    mut backend: TcpStream,
    mut reservation: Reservation,
    request: Head,
) {
    let backend_ref = std::sync::Arc::clone(reservation.backend());
    let label = backend_ref.label();
    let count = |result: &str| {
        shared
            .metrics
            .upgrades
            .with_label_values(&[label, result])
            .inc()
    };
    if backend.write_all(&request.bytes).await.is_err() {
        count("backend_error");
        return respond::simple(
            &mut client,
            502,
            "Bad Gateway",
            &[],
            "the backend closed the connection\n",
        )
        .await;
    }
    drop(request);
    let answer = head::read_response(
        &mut backend,
        MAX_RESPONSE_HEAD,
        config.upstream_handshake_timeout,
    )
    .await;
    let (response, info) = match answer {
        Ok(a) => a,
        Err(HeadError::Timeout(_)) => {
            count("backend_timeout");
            return respond::simple(
                &mut client,
                504,
                "Gateway Timeout",
                &[],
                "the backend did not answer the upgrade in time\n",
            )
            .await;
        }
        Err(_) => {
            count("backend_error");
            return respond::simple(
                &mut client,
                502,
                "Bad Gateway",
                &[],
                "the backend sent no valid answer to the upgrade\n",
            )
            .await;
        }
    };
    if info.status != 101 {
        count("refused");
        return forward_refusal(
            client,
            backend,
            response,
            info.content_length,
            config.upstream_handshake_timeout,
        )
        .await;
    }
    reservation.promote();
    count("ok");
    if client.write_all(&response.bytes).await.is_err() {
        return; // the client left during the handshake; the reservation drops here
    }
    drop(response);
    let started = tokio::time::Instant::now();
    let end = relay::relay(&client, &backend, config.websocket_idle_timeout).await;
    finish(shared, end, started.elapsed());
    drop(reservation);
}

fn finish(shared: &Shared, end: RelayEnd, lived: Duration) {
    debug!(
        end = end.as_str(),
        seconds = lived.as_secs_f64(),
        "websocket closed"
    );
    shared
        .metrics
        .connection_duration
        .with_label_values(&[end.as_str()])
        .observe(lived.as_secs_f64());
}

/// Passes a non-101 answer (and its body, up to its Content-Length or the backend's close)
/// to the client, then closes both. The reservation is released by the caller's drop.
async fn forward_refusal(
    mut client: TcpStream,
    mut backend: TcpStream,
    response: Head,
    length: Option<u64>,
    timeout: Duration,
) {
    let _ = tokio::time::timeout(timeout, async {
        client.write_all(&response.bytes).await?;
        let already = (response.bytes.len() - response.len) as u64;
        match length {
            Some(total) => {
                let mut rest =
                    tokio::io::AsyncReadExt::take(&mut backend, total.saturating_sub(already));
                tokio::io::copy(&mut rest, &mut client).await?;
            }
            None => {
                tokio::io::copy(&mut backend, &mut client).await?;
            }
        }
        client.shutdown().await
    })
    .await;
}
