//! Connecting to the reserved backend: on a refusal or timeout the backend is ejected for
//! `eject_for`, its slot is given back, and the next least-loaded backend is tried, up to
//! `connect_attempts` backends.

use std::net::SocketAddr;

use tidegate_common::Reservation;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::Config;
use crate::dataplane::Proxy;

/// Why no backend connection could be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoBackend {
    /// Every backend tried refused or timed out (they are ejected) → 502.
    Unreachable,
    /// The proxy itself is out of file descriptors (EMFILE / ENFILE) → 503, nobody ejected.
    OutOfDescriptors,
}

/// Connects to `first`'s backend, or to the next ones after failures; returns the reservation
/// of the backend connected to.
pub(super) async fn connect(
    proxy: &Proxy,
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
                // A new socket has keepalive off: only turning it on takes a call.
                if config.tcp_keepalive.0.is_some() {
                    let socket = socket2::SockRef::from(&stream);
                    crate::dataplane::inherited::set_keepalive(&socket, config.tcp_keepalive);
                }
                return Ok((reservation, stream));
            }
            // Out of descriptors is the proxy's own trouble: the backend is fine, keep it in.
            Ok(Err(e)) if is_out_of_descriptors(&e) => return Err(NoBackend::OutOfDescriptors),
            Ok(Err(e)) => debug!(backend = %addr, error = %e, "connect failed"),
            Err(_) => debug!(backend = %addr, "connect timed out"),
        }
        failed(proxy, config, &reservation);
        tried.push(addr);
        drop(reservation);
        if tried.len() >= config.connect_attempts as usize {
            return Err(NoBackend::Unreachable);
        }
        reservation = proxy
            .table
            .try_reserve(std::time::Instant::now(), &tried)
            .map_err(|_| NoBackend::Unreachable)?;
    }
}

/// Counts a failed connect and ejects the backend.
fn failed(proxy: &Proxy, config: &Config, reservation: &Reservation) {
    let label = reservation.backend().label();
    let m = &proxy.metrics;
    m.connect_failures.with_label_values(&[label]).inc();
    m.upgrades
        .with_label_values(&[label, "connect_error"])
        .inc();
    let now = std::time::Instant::now();
    proxy
        .table
        .eject(reservation.backend(), now, config.eject_for);
}

/// Whether a connect failed because this process (or the system) ran out of descriptors.
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}
