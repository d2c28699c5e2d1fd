//! Relaying an upgraded connection whose client side is a stream rather than a socket (TLS):
//! the same rules as [`super::relay`] — bytes read into a buffer on the stack, written out at
//! once, only the part the other side cannot take kept on the heap until written, and a
//! direction with unwritten bytes reads nothing more — over `AsyncRead`/`AsyncWrite`.
//!
//! Over TLS what rustls holds stays: while idle, its receive buffer (4 KiB once a record has
//! been read) and its per-connection state; written records it could not send at once are
//! held by rustls until flushed, and a direction reads nothing more until they are
//! (benches/README.md, "Memory over TLS").
//!
//! Interim: the data plane's relay is being made generic over its two streams (issue 10);
//! when it lands, this goes and TLS clients use it.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use super::relay::End;

/// Bytes read per readiness event; on the stack, never across an `.await`.
const CHUNK: usize = 16 * 1024;
/// Longest wait for the client's close_notify to be written after the backend closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One direction: bytes read but not yet taken by the other side, and whether what was
/// written still needs flushing (rustls holds records the socket did not take).
#[derive(Default)]
struct Direction {
    backlog: Vec<u8>,
    written: usize,
    unflushed: bool,
}

/// What polling a direction came to.
enum Step {
    Moved,
    Idle,
    Eof,
    ReadFailed,
    WriteFailed,
}

impl Direction {
    /// Moves what it can from `from` to `to` without blocking.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut (impl AsyncRead + Unpin),
        to: &mut (impl AsyncWrite + Unpin),
    ) -> Step {
        match self.poll_out(cx, to) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Step::WriteFailed,
            Poll::Pending => return Step::Idle,
        }
        let mut chunk = [0u8; CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *from).poll_read(cx, &mut buf) {
            Poll::Pending => return Step::Idle,
            Poll::Ready(Err(_)) => return Step::ReadFailed,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Step::Eof,
            Poll::Ready(Ok(())) => {}
        }
        let read = buf.filled();
        let mut written = 0;
        while written < read.len() {
            match Pin::new(&mut *to).poll_write(cx, &read[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Step::WriteFailed,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => break,
            }
        }
        if written < read.len() {
            self.backlog = read[written..].to_vec();
            self.written = 0;
        }
        self.unflushed = true;
        Step::Moved
    }

    /// Writes out the backlog, then flushes; ready once nothing is left to send.
    fn poll_out(
        &mut self,
        cx: &mut Context<'_>,
        to: &mut (impl AsyncWrite + Unpin),
    ) -> Poll<io::Result<()>> {
        while self.written < self.backlog.len() {
            let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.backlog[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if !self.backlog.is_empty() {
            *self = Self {
                unflushed: self.unflushed,
                ..Self::default()
            };
        }
        if self.unflushed {
            ready!(Pin::new(&mut *to).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// Relays bytes both ways until either side closes, fails, or nothing moves for `idle`.
pub async fn relay<C>(client: &mut C, backend: &mut TcpStream, idle: Duration) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up, mut down) = (Direction::default(), Direction::default());
    let mut last_activity = Instant::now();
    let timer = sleep_until(last_activity + idle);
    tokio::pin!(timer);
    let end = poll_fn(|cx| {
        loop {
            let mut moved = false;
            match up.poll(cx, client, backend) {
                Step::Moved => moved = true,
                Step::Idle => {}
                Step::Eof => return Poll::Ready(End::ClientClosed),
                Step::ReadFailed => return Poll::Ready(End::ClientError),
                Step::WriteFailed => return Poll::Ready(End::BackendError),
            }
            match down.poll(cx, backend, client) {
                Step::Moved => moved = true,
                Step::Idle => {}
                Step::Eof => return Poll::Ready(End::BackendClosed),
                Step::ReadFailed => return Poll::Ready(End::BackendError),
                Step::WriteFailed => return Poll::Ready(End::ClientError),
            }
            if moved {
                last_activity = Instant::now();
                continue;
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if last_activity.elapsed() >= idle {
                return Poll::Ready(End::IdleTimeout);
            }
            timer.as_mut().reset(last_activity + idle);
        }
    })
    .await;
    // Pass the close on, as the socket relay does: a half-close towards the backend, or
    // close_notify and FIN towards the client.
    match end {
        End::ClientClosed => {
            let _ = socket2::SockRef::from(&*backend).shutdown(std::net::Shutdown::Write);
        }
        End::BackendClosed => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.shutdown()).await;
        }
        _ => {}
    }
    end
}
