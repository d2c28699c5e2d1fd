//! Relaying an upgraded connection with no buffer held while it is idle.
//!
//! pingora's own tunnel keeps three 64 KiB buffers per upgraded connection for its whole life
//! (~60 KB resident per idle WebSocket). Here an idle tunnel holds only its two sockets and
//! this future: the relay waits for readiness, reads into a buffer on the thread's stack,
//! writes it out at once, and only if the other side cannot take everything does the rest go
//! to a heap buffer, sized to the remainder and freed as soon as it is written. Backpressure
//! is kept: a direction with unwritten bytes reads nothing more until they are out.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

/// Bytes read per readiness event; lives on the stack, never across an `.await`.
const CHUNK: usize = 16 * 1024;

/// How a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed (or half-closed) its side.
    ClientClosed,
    /// The backend closed (or half-closed) its side.
    BackendClosed,
    /// No bytes either way for the idle timeout.
    IdleTimeout,
    /// Reading from or writing to the client failed.
    ClientError,
    /// Reading from or writing to the backend failed.
    BackendError,
}

impl End {
    /// A bounded label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::BackendClosed => "backend_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::ClientError => "client_error",
            Self::BackendError => "backend_error",
        }
    }
}

/// Bytes read from one side that the other side has not taken yet.
#[derive(Default)]
struct Backlog {
    bytes: Vec<u8>,
    written: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.written >= self.bytes.len()
    }
}

/// One end of the tunnel.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Backend,
}

/// What one readiness event on a direction came to.
enum Step {
    Moved,
    Idle,
    Eof(Side),
    Failed(Side),
}

/// Relays bytes both ways until either side closes, fails, or nothing moves for `idle`.
pub async fn relay(client: &TcpStream, backend: &TcpStream, idle: Duration) -> End {
    use Side::{Backend, Client};
    let (mut up, mut down) = (Backlog::default(), Backlog::default());
    let mut last_activity = Instant::now();
    let timer = sleep_until(last_activity + idle);
    tokio::pin!(timer);
    loop {
        let step = tokio::select! {
            r = client.readable(), if up.is_empty() => on(r, Client, || pump((client, Client), (backend, Backend), &mut up)),
            r = backend.writable(), if !up.is_empty() => on(r, Backend, || drain(backend, Backend, &mut up)),
            r = backend.readable(), if down.is_empty() => on(r, Backend, || pump((backend, Backend), (client, Client), &mut down)),
            r = client.writable(), if !down.is_empty() => on(r, Client, || drain(client, Client, &mut down)),
            () = &mut timer => {
                if last_activity.elapsed() >= idle {
                    return End::IdleTimeout;
                }
                timer.as_mut().reset(last_activity + idle);
                continue;
            }
        };
        match step {
            Step::Moved => last_activity = Instant::now(),
            Step::Idle => {}
            // A side that reads EOF has no backlog towards the other (it is read only when
            // its backlog is empty): pass the close on and end.
            Step::Eof(Client) => return close_towards(backend, End::ClientClosed),
            Step::Eof(Backend) => return close_towards(client, End::BackendClosed),
            Step::Failed(Client) => return End::ClientError,
            Step::Failed(Backend) => return End::BackendError,
        }
    }
}

fn on(r: io::Result<()>, side: Side, then: impl FnOnce() -> Step) -> Step {
    match r {
        Ok(()) => then(),
        Err(_) => Step::Failed(side),
    }
}

/// Reads what is there and writes as much as the other side takes now; keeps the rest.
fn pump(from: (&TcpStream, Side), to: (&TcpStream, Side), backlog: &mut Backlog) -> Step {
    let mut chunk = [0u8; CHUNK];
    let n = match from.0.try_read(&mut chunk) {
        Ok(0) => return Step::Eof(from.1),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Idle,
        Err(_) => return Step::Failed(from.1),
    };
    let mut written = 0;
    while written < n {
        match to.0.try_write(&chunk[written..n]) {
            Ok(w) => written += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Step::Failed(to.1),
        }
    }
    if written < n {
        *backlog = Backlog {
            bytes: chunk[written..n].to_vec(),
            written: 0,
        };
    }
    Step::Moved
}

/// Writes out part of the backlog; frees it when done.
fn drain(to: &TcpStream, side: Side, backlog: &mut Backlog) -> Step {
    match to.try_write(&backlog.bytes[backlog.written..]) {
        Ok(w) => {
            backlog.written += w;
            if backlog.is_empty() {
                *backlog = Backlog::default();
            }
            Step::Moved
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Idle,
        Err(_) => Step::Failed(side),
    }
}

/// Half-closes towards the other side; dropping the sockets afterwards closes the rest.
fn close_towards(to: &TcpStream, end: End) -> End {
    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
    end
}
