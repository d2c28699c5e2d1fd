//! Where one direction of a WebSocket stands between frames, learned from the frame headers
//! alone, and the close frames the proxy writes itself.
//!
//! The relay copies bytes without looking at them. To close a connection properly (a close
//! frame with code 1001 to each peer, see `docs/architecture.md`, "A drain that closes
//! WebSockets properly") it must write that frame between two frames, never inside one, so each
//! direction carries a [`Frames`]: 16 bytes that follow the headers (RFC 6455 §5.2) over every
//! chunk that passes and skip payloads by their length. No payload is copied or unmasked and
//! nothing is buffered: a header split over two reads is parsed byte by byte as it arrives.
//!
//! The tracker is agnostic to what the headers say beyond their length: reserved bits and
//! extensions (permessage-deflate sets RSV1) do not change where a frame ends, and a peer that
//! sends bytes that are not frames at all only makes the tracker follow nonsense — it never
//! panics and never grows (fuzzed by the property tests below).

/// Opcode of a close frame.
const CLOSE: u8 = 0x8;
/// `flags`: the opcode of the frame being read (or the last one).
const OPCODE: u8 = 0x0f;
/// `flags`: the frame being read carries a masking key.
const MASKED: u8 = 0x10;
/// `flags`: a close frame has started in this direction since the last [`Frames::forget_close`].
const CLOSE_SEEN: u8 = 0x80;

/// Code 1001, "going away": the endpoint is leaving (RFC 6455 §7.4.1).
pub const GOING_AWAY: u16 = 1001;

/// The frame-boundary tracker of one direction.
///
/// Between frames `seen == 0 && remaining == 0`; inside a payload `seen == 0` and `remaining`
/// counts what is left of it; inside a header `seen` counts its bytes so far (at most 14) and
/// `remaining` accumulates the payload length as its bytes arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frames {
    remaining: u64,
    /// Header bytes of the current frame seen so far; 0 between frames and inside payloads.
    seen: u8,
    /// The current header's whole length (2 to 14) once its second byte is known, else 0.
    need: u8,
    flags: u8,
}

impl Frames {
    /// A tracker that has already seen `bytes` (e.g. what followed the handshake in its read).
    pub fn after(bytes: &[u8]) -> Self {
        let mut frames = Self::default();
        frames.advance(bytes);
        frames
    }

    /// Follows `bytes`, the next ones of this direction.
    pub fn advance(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.seen == 0 && self.remaining > 0 {
                let skip =
                    usize::try_from(self.remaining).map_or(rest.len(), |r| r.min(rest.len()));
                self.remaining -= skip as u64;
                rest = &rest[skip..];
                continue;
            }
            if self.seen == 0 {
                // At a boundary with a whole header in hand (the usual case): all at once.
                if let Some(header) = self.whole_header(rest) {
                    rest = &rest[header..];
                    continue;
                }
            }
            self.header_byte(rest[0]);
            rest = &rest[1..];
        }
    }

    /// Takes the header at the start of `bytes` if it is all there; returns its length.
    fn whole_header(&mut self, bytes: &[u8]) -> Option<usize> {
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        let (masked, len7) = (second & 0x80 != 0, second & 0x7f);
        let extended = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + extended + if masked { 4 } else { 0 };
        if bytes.len() < need {
            return None;
        }
        self.remaining = match extended {
            0 => u64::from(len7),
            _ => bytes[2..2 + extended]
                .iter()
                .fold(0, |n, b| (n << 8) | u64::from(*b)),
        };
        let opcode = first & OPCODE;
        let close = if opcode == CLOSE { CLOSE_SEEN } else { 0 };
        let mask = if masked { MASKED } else { 0 };
        self.flags = (self.flags & CLOSE_SEEN) | close | mask | opcode;
        Some(need)
    }

    fn header_byte(&mut self, byte: u8) {
        match self.seen {
            0 => {
                let opcode = byte & OPCODE;
                let close = if opcode == CLOSE { CLOSE_SEEN } else { 0 };
                self.flags = (self.flags & CLOSE_SEEN) | close | opcode;
            }
            1 => {
                let (masked, len7) = (byte & 0x80 != 0, byte & 0x7f);
                let extended = match len7 {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                self.need = 2 + extended + if masked { 4 } else { 0 };
                self.remaining = if extended == 0 { u64::from(len7) } else { 0 };
                if masked {
                    self.flags |= MASKED;
                } else {
                    self.flags &= !MASKED;
                }
            }
            seen => {
                let mask = if self.flags & MASKED != 0 { 4 } else { 0 };
                if seen < self.need - mask {
                    self.remaining = (self.remaining << 8) | u64::from(byte);
                }
            }
        }
        self.seen += 1;
        if self.seen >= 2 && self.seen == self.need {
            (self.seen, self.need) = (0, 0);
        }
    }

    /// Whether every byte seen so far belongs to a complete frame.
    pub fn at_boundary(&self) -> bool {
        self.seen == 0 && self.remaining == 0
    }

    /// How many more bytes may be read without reading past the end of the current frame: 0 at
    /// a boundary, the rest of the payload inside one, the rest of the header (one byte until
    /// its length is known) inside a header.
    pub fn to_boundary(&self) -> u64 {
        match (self.seen, self.need) {
            (0, _) => self.remaining,
            (_, 0) => 1,
            (seen, need) => u64::from(need - seen),
        }
    }

    /// Whether a close frame has started in this direction since the last
    /// [`forget_close`](Self::forget_close) (or since the start).
    pub fn close_seen(&self) -> bool {
        self.flags & CLOSE_SEEN != 0
    }

    /// Forgets close frames seen so far, to notice the next one.
    pub fn forget_close(&mut self) {
        self.flags &= !CLOSE_SEEN;
    }
}

/// Longest close frame [`close_frame`] writes: a masked header and a 2-byte code, 32 of reason.
pub const MAX_CLOSE_FRAME: usize = 6 + 2 + 32;

/// A close frame with `code` and `reason` (at most 32 bytes, cut if longer): unmasked (to a
/// client) when `mask` is `None`, masked with that key (to a server) otherwise.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(32)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    let mut frame = Vec::with_capacity(MAX_CLOSE_FRAME);
    frame.push(0x80 | CLOSE);
    let len = payload.len() as u8;
    match mask {
        None => {
            frame.push(len);
            frame.extend_from_slice(&payload);
        }
        Some(key) => {
            frame.push(0x80 | len);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
    }
    frame
}

#[cfg(test)]
mod tests;
