//! Connecting to the reserved backend: on a refusal or timeout the backend is ejected for
//! `eject_for`, its slot is given back, and the next least-loaded backend is tried, up to
//! `connect_attempts` backends.

use std::net::SocketAddr;

use tidegate_common::Reservation;
use tokio::net::{TcpSocket, TcpStream};
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
        match tokio::time::timeout(config.connect_timeout, open(addr, config)).await {
            Ok(Ok(stream)) => return Ok((reservation, stream)),
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

/// Connects to `addr` with the backend leg's options set before the handshake: no Nagle,
/// keepalive as configured, and the handshake's last ACK held back to ride on the request that
/// follows at once (`TCP_QUICKACK` off, what HAProxy calls `tcp-smart-connect`): one packet
/// fewer per upgrade on each side, and the backend is woken once, with the request, instead of
/// once for the handshake and once for the request.
async fn open(addr: SocketAddr, config: &Config) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    let _ = socket.set_nodelay(true);
    let options = socket2::SockRef::from(&socket);
    // A new socket has keepalive off: only turning it on takes a call.
    if config.tcp_keepalive.0.is_some() {
        crate::dataplane::inherited::set_keepalive(&options, config.tcp_keepalive);
    }
    let _ = options.set_tcp_quickack(false);
    socket.connect(addr).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_handshakes_last_ack_rides_on_the_request() {
        let config = Config::default();
        // Without the handshake's last ACK the backend's side is not yet established, so there
        // is nothing to accept; with quick ACKs on, connect returns after that ACK went out and
        // the connection is always queued already. The kernel sends the ACK alone after 200 ms,
        // so a test thread held up that long on a loaded machine sees it queued too: up to
        // five tries, of which one must find nothing to accept.
        for _ in 0..5 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut stream = open(listener.local_addr().unwrap(), &config).await.unwrap();
            let queued = listener.accept().now_or_never().is_some();
            let options = socket2::SockRef::from(&stream);
            assert!(options.tcp_nodelay().unwrap());
            assert_eq!(
                options.keepalive().unwrap(),
                config.tcp_keepalive.0.is_some()
            );
            if queued {
                continue;
            }
            stream.write_all(b"GET").await.unwrap();
            let (mut accepted, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 3];
            accepted.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"GET");
            return;
        }
        panic!("the handshake's ACK went out on its own in 5 of 5 connects");
    }
}
