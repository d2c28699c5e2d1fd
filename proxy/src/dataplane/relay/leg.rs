//! One direction of the relay: read what the source has into a chunk on the stack, follow its
//! frames, write it straight to the destination; only what the destination cannot take now is
//! kept, on the heap, until it is written.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::dataplane::frames::Frames;

/// Bytes read per step; lives on the stack of one poll, never across an `.await`.
///
/// 64 KiB, loopback's segment size: under a stream of messages one read takes all that has
/// arrived, so 4 KiB echoes with 32 in flight per connection cost a third of the reads and
/// writes of a 16 KiB chunk (benches/README.md, "Syscalls per relayed message"). What the other
/// side cannot take at once is kept on the heap until written, so a connection whose peer has
/// stopped reading holds at most this much per direction beside the kernel's socket buffers.
pub const CHUNK: usize = 64 * 1024;

/// How a direction may read in its current phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Read and pass on whatever comes.
    Relay,
    /// Read and pass on at most up to the end of the current frame; nothing at a boundary.
    ToBoundary,
    /// Read and drop (after the proxy's close frame: only the peer's answer matters), while
    /// still writing out what is owed to the destination.
    Discard,
    /// Only write out what is owed to the destination; read nothing.
    Flush,
}

/// What one step of a direction came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Bytes were read or written.
    Moved,
    /// Nothing to do until a socket is ready (its waker is registered).
    Idle,
    /// The source closed its side.
    Eof,
    /// Reading from the source failed.
    ReadFailed,
    /// Writing to the destination failed.
    WriteFailed,
}

/// Bytes read from the source that the destination has not taken yet.
#[derive(Default)]
struct Backlog {
    bytes: Vec<u8>,
    /// At most a chunk plus a close frame: a `u32` keeps every idle leg 8 bytes smaller.
    written: u32,
}

impl Backlog {
    fn rest(&self) -> &[u8] {
        &self.bytes[self.written as usize..]
    }
}

/// One direction: its backlog and where its frames stand.
#[derive(Default)]
pub(super) struct Leg {
    backlog: Backlog,
    /// Written but maybe still in the destination's own buffer (a TLS stream's); a plain TCP
    /// stream's flush is a no-op.
    unflushed: bool,
    /// The frames read from the source so far.
    pub(super) frames: Frames,
}

impl Leg {
    /// A direction whose frames stand at `frames`.
    pub(super) fn after(frames: Frames) -> Self {
        Self {
            frames,
            ..Self::default()
        }
    }

    /// Whether everything read has been written out (and flushed).
    pub(super) fn is_written(&self) -> bool {
        self.backlog.rest().is_empty() && !self.unflushed
    }

    /// Queues `frame` after what is owed to the destination (the proxy's own close frame).
    pub(super) fn queue(&mut self, frame: &[u8]) {
        self.backlog.bytes.drain(..self.backlog.written as usize);
        self.backlog.written = 0;
        self.backlog.bytes.extend_from_slice(frame);
    }

    /// Gives up on what is owed to the destination (it can no longer be written to).
    pub(super) fn abandon(&mut self) {
        self.backlog = Backlog::default();
        self.unflushed = false;
    }

    /// One step: write out the backlog if there is one, else read a chunk and pass it on.
    pub(super) fn step<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        mode: Mode,
    ) -> Step
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if !self.is_written() {
            let flushed = self.write_out(cx, dst);
            if mode != Mode::Discard || flushed != Step::Idle {
                return flushed;
            }
        }
        let limit = match mode {
            Mode::Relay | Mode::Discard => CHUNK,
            Mode::ToBoundary => {
                usize::try_from(self.frames.to_boundary()).map_or(CHUNK, |n| n.min(CHUNK))
            }
            Mode::Flush => 0,
        };
        if limit == 0 {
            return Step::Idle;
        }
        // Not zeroed: a step that finds nothing to read (most of them) must cost no memset.
        let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk[..limit]);
        match Pin::new(&mut *src).poll_read(cx, &mut buf) {
            Poll::Pending => return Step::Idle,
            Poll::Ready(Err(_)) => return Step::ReadFailed,
            Poll::Ready(Ok(())) => {}
        }
        let read = buf.filled();
        if read.is_empty() {
            return Step::Eof;
        }
        self.frames.advance(read);
        if mode == Mode::Discard {
            return Step::Moved;
        }
        self.pass(cx, dst, read)
    }

    /// Writes as much of `bytes` as the destination takes now; keeps the rest.
    fn pass<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        bytes: &[u8],
    ) -> Step {
        let mut written = 0;
        while written < bytes.len() {
            match Pin::new(&mut *dst).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Step::WriteFailed,
                Poll::Ready(Ok(w)) => written += w,
                Poll::Pending => break,
            }
        }
        if written < bytes.len() {
            self.backlog = Backlog {
                bytes: bytes[written..].to_vec(),
                written: 0,
            };
            return Step::Moved;
        }
        self.unflushed = true;
        match self.flush(cx, dst) {
            Step::Idle => Step::Moved,
            other => other,
        }
    }

    /// Writes out part of the backlog (freed when done), then flushes.
    fn write_out<W: AsyncWrite + Unpin>(&mut self, cx: &mut Context<'_>, dst: &mut W) -> Step {
        if self.backlog.rest().is_empty() {
            return self.flush(cx, dst);
        }
        match Pin::new(&mut *dst).poll_write(cx, self.backlog.rest()) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Step::WriteFailed,
            Poll::Ready(Ok(w)) => {
                // `w` is at most the rest, and the backlog fits a `u32` (see `Backlog`).
                self.backlog.written += u32::try_from(w).unwrap_or(u32::MAX);
                if self.backlog.rest().is_empty() {
                    self.backlog = Backlog::default();
                    self.unflushed = true;
                    let _ = self.flush(cx, dst);
                }
                Step::Moved
            }
            Poll::Pending => Step::Idle,
        }
    }

    fn flush<W: AsyncWrite + Unpin>(&mut self, cx: &mut Context<'_>, dst: &mut W) -> Step {
        match Pin::new(&mut *dst).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Step::Moved
            }
            Poll::Ready(Err(_)) => Step::WriteFailed,
            Poll::Pending => Step::Idle,
        }
    }
}
