//! The client leg's socket options, set once on the listening socket rather than on every
//! connection it accepts.
//!
//! Linux copies a listener's `TCP_NODELAY` and keepalive settings (`SO_KEEPALIVE`,
//! `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`) to each connection it accepts, keepalive
//! timer included, so setting them on the listener saves five `setsockopt` calls per accepted
//! connection (benches/README.md, "Syscalls per upgrade"). A reload can change
//! `tcp_keepalive`: the accept loop checks the running config's value at every accept and, when
//! it differs from the listener's, sets the listener again and the socket just accepted too
//! (it may have been queued under the old settings). Connections still queued behind it when
//! the settings change keep the ones they were queued under, as a connection accepted just
//! before the reload would. Should a listener refuse an option, every connection it accepts is
//! set one by one, as before.

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::config::Keepalive;

/// What one listening socket hands down to the connections it accepts.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The keepalive settings on the listener; `None` until first set.
    applied: Option<Keepalive>,
    /// Whether the listener refused one of them; then every accepted socket is set.
    refused: bool,
}

impl Inherited {
    /// Brings `listener` to `keepalive` (and `TCP_NODELAY`) if it is not there yet; `stream`,
    /// just accepted from it, is given the same settings when they changed, or always if the
    /// listener refused them.
    pub fn accepted(&mut self, listener: &TcpListener, stream: &TcpStream, keepalive: Keepalive) {
        if self.applied == Some(keepalive) && !self.refused {
            return;
        }
        if self.applied != Some(keepalive) {
            let listening = socket2::SockRef::from(listener);
            let nodelay = listening.set_tcp_nodelay(true);
            if let Err(e) = &nodelay {
                debug!(error = %e, "cannot set TCP_NODELAY on the listener");
            }
            self.refused = nodelay.is_err() | !set_keepalive(&listening, keepalive);
            self.applied = Some(keepalive);
        }
        let _ = stream.set_nodelay(true);
        let _ = set_keepalive(&socket2::SockRef::from(stream), keepalive);
    }
}

/// Turns on TCP keepalive with `keepalive`'s timings, or off; whether the socket took it. A
/// socket that refuses the option is served anyway. The backend leg's sockets are set with it
/// too, after their connect (`tunnel::connect`).
pub fn set_keepalive(socket: &socket2::SockRef<'_>, keepalive: Keepalive) -> bool {
    let set = match keepalive.0 {
        Some(k) => socket.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(k.idle)
                .with_interval(k.interval)
                .with_retries(k.count),
        ),
        None => socket.set_keepalive(false),
    };
    if let Err(e) = &set {
        debug!(error = %e, "cannot set TCP keepalive");
    }
    set.is_ok()
}
