//! Relaying an upgraded connection with no buffer held while it is idle, and closing it properly
//! when the proxy asks.
//!
//! pingora's own tunnel keeps three 64 KiB buffers per upgraded connection for its whole life
//! (~60 KB resident per idle WebSocket). Here an idle tunnel holds only its two sockets and
//! this future: the relay waits for readiness, reads into a buffer on the thread's stack
//! ([`leg`]), writes it out at once, and only if the other side cannot take everything does the
//! rest go to a heap buffer, sized to the remainder and freed as soon as it is written.
//! Backpressure is kept: a direction with unwritten bytes reads nothing more until they are out.
//!
//! Each direction follows its frame headers ([`Frames`]), so when the connection's [`Signal`]
//! asks for a close the relay can end it the way RFC 6455 wants: each direction reads on only
//! to the end of the frame in flight, and once both stand between frames a close frame with
//! code 1001 goes to the client (unmasked) and to the backend (masked); what either peer sends
//! after that is dropped until its own close frame answers, then both sockets are closed. A
//! frame that does not end, or a peer that does not answer, within the close timeout is cut.
//! See `docs/architecture.md`, "A drain that closes WebSockets properly".
//!
//! The relay is generic over its two streams (anything `AsyncRead + AsyncWrite + Unpin`, e.g. a
//! TLS stream), and reads inside `poll_read` only, so no buffer is held across an `.await`.

mod leg;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep, sleep_until};

use super::connections::{Ask, Cause, Signal};
use super::frames::{self, Frames, GOING_AWAY};
pub use leg::CHUNK;
use leg::{Leg, Mode, Step};

/// Steps one poll may take before it yields to the other tasks of its thread.
const STEPS_PER_POLL: usize = 32;
/// Longest wait for a stream's shutdown (a TLS close_notify) after the relay ends.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

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
    /// Asked to close: both peers got a 1001 close frame and answered it.
    ProxyClosed,
    /// Asked to close: both peers got a 1001 close frame; one did not answer in time (or left
    /// without answering).
    CloseUnanswered,
    /// Asked to close, but cut without a close frame: a frame did not end within the close
    /// timeout, or the proxy asked for a cut (the end of the shutdown grace period).
    Cut,
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
            Self::ProxyClosed => "proxy_closed",
            Self::CloseUnanswered => "close_unanswered",
            Self::Cut => "cut",
        }
    }
}

/// A relay between a client and a backend: configured, then [`run`](Relay::run).
pub struct Relay {
    idle: Duration,
    close: Option<(Arc<Signal>, Duration)>,
    up: Leg,
    down: Leg,
}

impl Relay {
    /// A relay that ends after `idle` without a byte either way.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            close: None,
            up: Leg::default(),
            down: Leg::default(),
        }
    }

    /// Starts from where the frames already passed to the backend (`up`) and to the client
    /// (`down`) stand, e.g. frames that came in the same read as a handshake head.
    pub fn after(mut self, up: Frames, down: Frames) -> Self {
        (self.up, self.down) = (Leg::after(up), Leg::after(down));
        self
    }

    /// Closes when `signal` asks, giving a frame in flight and the peers' answers `timeout`.
    pub fn closed_by(mut self, signal: Arc<Signal>, timeout: Duration) -> Self {
        self.close = Some((signal, timeout));
        self
    }

    /// Relays until either side closes or fails, nothing moves for the idle timeout, or a close
    /// the signal asked for is done.
    ///
    /// The streams are taken by value (pass `&mut` ones to keep them) and dropped when the relay
    /// ends. Every idle WebSocket's task carries this future, so it is kept small: not an
    /// `async fn`, so that it holds the relay's state once, where an `async fn` would also keep
    /// room for its moved-from argument, and one timer serves the idle timeout, the close
    /// timeout and the wait for the shutdowns (see [`Self::wait_for_shutdown`]).
    pub fn run<C, B>(self, mut client: C, mut backend: B) -> impl Future<Output = End>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let mut state = State {
            up: self.up,
            down: self.down,
            phase: Phase::Relaying,
            heeded: Ask::Relay,
            last_activity: Instant::now(),
            idle: self.idle,
            close: self.close,
        };
        async move {
            state.last_activity = Instant::now();
            let mut timer = std::pin::pin!(sleep_until(state.last_activity + state.idle));
            let (end, mut shut) =
                poll_fn(|cx| state.poll(cx, &mut client, &mut backend, timer.as_mut())).await;
            timer.as_mut().reset(Instant::now() + SHUTDOWN_WAIT);
            poll_fn(|cx| shut.poll(cx, &mut client, &mut backend, timer.as_mut())).await;
            end
        }
    }
}

/// Relays until either side closes, fails, or nothing moves for `idle` (no close signal).
pub async fn relay<C, B>(client: &mut C, backend: &mut B, idle: Duration) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    Relay::new(idle).run(client, backend).await
}

/// Which write sides to shut down once the relay ends.
#[derive(Clone, Copy, Default)]
struct Shut {
    client: bool,
    backend: bool,
}

impl Shut {
    const BOTH: Shut = Shut {
        client: true,
        backend: true,
    };

    /// Shuts down the write sides named (a TLS stream sends its close_notify), the client's
    /// first, until `timer` fires.
    fn poll<C, B>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        backend: &mut B,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<()>
    where
        C: AsyncWrite + Unpin,
        B: AsyncWrite + Unpin,
    {
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if self.client {
            if Pin::new(&mut *client).poll_shutdown(cx).is_pending() {
                return Poll::Pending;
            }
            self.client = false;
        }
        if self.backend && Pin::new(&mut *backend).poll_shutdown(cx).is_pending() {
            return Poll::Pending;
        }
        self.backend = false;
        Poll::Ready(())
    }
}

/// Where a peer stands once the proxy's close frame is queued to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Waiting,
    Answered,
    Gone,
}

/// Where the relay is; once asked to close, the timer is set to the end of the close timeout.
enum Phase {
    Relaying,
    /// Asked to close: each direction reads on to the end of its frame, then waits for the
    /// other.
    Closing(Cause),
    /// Close frames queued both ways; what comes back is dropped until each peer answers.
    Closed {
        client: Answer,
        backend: Answer,
    },
    /// The peers' own close handshake had begun when the ask came: relayed as is.
    Passing,
}

struct State {
    /// Client → backend.
    up: Leg,
    /// Backend → client.
    down: Leg,
    phase: Phase,
    /// The last ask acted on.
    heeded: Ask,
    last_activity: Instant,
    idle: Duration,
    close: Option<(Arc<Signal>, Duration)>,
}

impl State {
    /// The relay's one poll: steps both directions until neither can move, then waits on the
    /// sockets, the timer and the signal. One function on purpose: it is the hot path of every
    /// message, and its order (signal, steps, close progress, timer, registration) is the
    /// protocol.
    fn poll<C, B>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        backend: &mut B,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<(End, Shut)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        for _ in 0..STEPS_PER_POLL {
            if let Some(done) = self.heed(timer.as_mut()) {
                return Poll::Ready(done);
            }
            let (up_mode, down_mode) = self.modes();
            let up = self.up.step(cx, client, backend, up_mode);
            let down = self.down.step(cx, backend, client, down_mode);
            if let Some(done) = self.ended(up, down) {
                return Poll::Ready(done);
            }
            let closing = matches!(self.phase, Phase::Closing(_));
            if let Some(done) = self.close_progress() {
                return Poll::Ready(done);
            }
            // Close frames just queued are written in the next round.
            let queued = closing && matches!(self.phase, Phase::Closed { .. });
            if up == Step::Moved || down == Step::Moved || queued {
                if matches!(self.phase, Phase::Relaying) {
                    self.last_activity = Instant::now();
                }
                continue;
            }
            if timer.as_mut().poll(cx).is_ready() {
                match self.on_timer(timer.as_mut()) {
                    Some(done) => return Poll::Ready(done),
                    None => continue,
                }
            }
            match &self.close {
                Some((signal, _)) if signal.register(cx.waker()) != self.heeded => continue,
                _ => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Acts on a new ask of the signal: a cut ends now; a close starts the closing phase.
    fn heed(&mut self, timer: Pin<&mut Sleep>) -> Option<(End, Shut)> {
        let (signal, timeout) = self.close.as_ref()?;
        let (ask, timeout) = (signal.ask(), *timeout);
        if ask == self.heeded {
            return None;
        }
        self.heeded = ask;
        match ask {
            Ask::Relay => None,
            Ask::Cut => Some((End::Cut, Shut::default())),
            Ask::Close(cause) => {
                if matches!(self.phase, Phase::Relaying) {
                    timer.reset(Instant::now() + timeout);
                    let begun = self.up.frames.close_seen() || self.down.frames.close_seen();
                    self.phase = if begun {
                        Phase::Passing
                    } else {
                        Phase::Closing(cause)
                    };
                }
                None
            }
        }
    }

    fn modes(&self) -> (Mode, Mode) {
        let listen = |peer: Answer| {
            if peer == Answer::Waiting {
                Mode::Discard
            } else {
                Mode::Flush
            }
        };
        match self.phase {
            Phase::Relaying | Phase::Passing => (Mode::Relay, Mode::Relay),
            Phase::Closing(_) => (Mode::ToBoundary, Mode::ToBoundary),
            Phase::Closed {
                client, backend, ..
            } => (listen(client), listen(backend)),
        }
    }

    /// How the steps end the relay: a close or failure of either side ends it, except once the
    /// proxy's close frames are out, where it only means that peer is gone.
    fn ended(&mut self, up: Step, down: Step) -> Option<(End, Shut)> {
        if let Phase::Closed {
            client, backend, ..
        } = &mut self.phase
        {
            let left = |step| matches!(step, Step::Eof | Step::ReadFailed);
            if left(up) && *client == Answer::Waiting {
                *client = Answer::Gone;
            }
            if left(down) && *backend == Answer::Waiting {
                *backend = Answer::Gone;
            }
            // A peer that cannot be written to will not read the close frame: stop owing it.
            for (step, leg, peer) in [(up, &mut self.up, backend), (down, &mut self.down, client)] {
                if step == Step::WriteFailed {
                    leg.abandon();
                    if *peer == Answer::Waiting {
                        *peer = Answer::Gone;
                    }
                }
            }
            return None;
        }
        let shut = |client, backend| Shut { client, backend };
        match (up, down) {
            (Step::Eof, _) => Some((End::ClientClosed, shut(false, true))),
            (_, Step::Eof) => Some((End::BackendClosed, shut(true, false))),
            (Step::ReadFailed, _) | (_, Step::WriteFailed) => {
                Some((End::ClientError, shut(false, false)))
            }
            (Step::WriteFailed, _) | (_, Step::ReadFailed) => {
                Some((End::BackendError, shut(false, false)))
            }
            _ => None,
        }
    }

    /// Queues the close frames once both directions stand between frames; ends once both
    /// peers answered (or left) and everything owed to them is written.
    fn close_progress(&mut self) -> Option<(End, Shut)> {
        match self.phase {
            Phase::Closing(cause) => {
                if self.up.frames.at_boundary() && self.down.frames.at_boundary() {
                    self.queue_closes(cause);
                }
                None
            }
            Phase::Closed { .. } => self.answered(),
            Phase::Relaying | Phase::Passing => None,
        }
    }

    /// Queues a 1001 close frame to the client (unmasked) and to the backend (masked).
    fn queue_closes(&mut self, cause: Cause) {
        let reason = cause.reason();
        self.down
            .queue(&frames::close_frame(GOING_AWAY, reason, None));
        let key = fastrand::u32(..).to_ne_bytes();
        self.up
            .queue(&frames::close_frame(GOING_AWAY, reason, Some(key)));
        self.up.frames.forget_close();
        self.down.frames.forget_close();
        self.phase = Phase::Closed {
            client: Answer::Waiting,
            backend: Answer::Waiting,
        };
    }

    /// Notes the peers' answers; the end once both answered (or left) and nothing is owed.
    fn answered(&mut self) -> Option<(End, Shut)> {
        let Phase::Closed { client, backend } = &mut self.phase else {
            return None;
        };
        let heard = |leg: &Leg| leg.frames.close_seen() && leg.frames.at_boundary();
        if *client == Answer::Waiting && heard(&self.up) {
            *client = Answer::Answered;
        }
        if *backend == Answer::Waiting && heard(&self.down) {
            *backend = Answer::Answered;
        }
        let owed = |peer: Answer, leg: &Leg| peer != Answer::Gone && !leg.is_written();
        let waiting = *client == Answer::Waiting || *backend == Answer::Waiting;
        if waiting || owed(*client, &self.down) || owed(*backend, &self.up) {
            return None;
        }
        let clean = *client == Answer::Answered && *backend == Answer::Answered;
        let end = if clean {
            End::ProxyClosed
        } else {
            End::CloseUnanswered
        };
        Some((end, Shut::BOTH))
    }

    /// The timer fired: the idle timeout (re-armed if there was activity since), or the end of
    /// the close timeout.
    fn on_timer(&mut self, timer: Pin<&mut Sleep>) -> Option<(End, Shut)> {
        match self.phase {
            Phase::Relaying => {
                if self.last_activity.elapsed() >= self.idle {
                    return Some((End::IdleTimeout, Shut::default()));
                }
                timer.reset(self.last_activity + self.idle);
                None
            }
            Phase::Closing(_) | Phase::Passing => Some((End::Cut, Shut::default())),
            Phase::Closed { .. } => Some((End::CloseUnanswered, Shut::BOTH)),
        }
    }
}

#[cfg(test)]
mod tests;
