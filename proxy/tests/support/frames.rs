//! WebSocket frames by hand, over any stream (a TCP socket or a TLS one): the opening
//! handshake written raw, bytes written through to the backend, the proxy's frames read one at
//! a time, and a client that reads on until the proxy's close.

use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Backend, DEADLINE, wait_until};

/// Writes a WebSocket upgrade request on `s` and reads the answer's head, which must be a 101.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    let request = "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// The next frame from the proxy (unmasked): opcode byte and payload.
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!(h[1] & 0x80, 0, "frames to a client are not masked");
    let len = match h[1] & 0x7f {
        126 => usize::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    (h[0], payload)
}

/// A masked binary frame of `len` bytes of payload, whole.
pub fn binary_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[7, 7, 7, 7]);
    frame.extend(std::iter::repeat_n(0xab, len));
    frame
}

/// A masked close frame with code 1001: a client's answer to the proxy's close.
pub fn close_answer() -> Vec<u8> {
    let mut answer = vec![0x88, 0x82, 1, 2, 3, 4];
    answer.extend([0x03 ^ 1, 0xe9 ^ 2]);
    answer
}

/// Reads until the proxy's close frame; answers it (tungstenite does) and reads on to the end.
/// Returns the close code and when it arrived.
pub async fn close_of<S>(mut ws: WebSocketStream<S>) -> (Option<CloseCode>, Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut closed = None;
    while let Ok(Some(msg)) = tokio::time::timeout(DEADLINE, ws.next()).await {
        match msg {
            Ok(Message::Close(frame)) => closed = Some((frame.map(|f| f.code), Instant::now())),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    closed.expect("a close frame")
}

/// Writes `bytes` on a WebSocket just opened to `backend` (its only one: nothing else may reach
/// it meanwhile) and returns once the backend has read them all, e.g. the start of a frame the
/// relay must now finish before it may close.
pub async fn write_through<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8], backend: &Backend) {
    wait_until("the backend took the upgrade", || async {
        backend.stats.open() >= 1
    })
    .await;
    let before = backend.stats.received_bytes();
    s.write_all(bytes).await.unwrap();
    let want = before + bytes.len() as u64;
    wait_until("the bytes reached the backend", || async {
        backend.stats.received_bytes() >= want
    })
    .await;
}

/// The proxy's close must wait for the client's frame in flight: nothing reaches the client
/// for a while, then, once `rest` (the frame's end) is written, the next frame is a 1001
/// close. Answers it and reads to the end: what came after the close (nothing is expected).
pub async fn close_after_frame<S>(s: &mut S, rest: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut b = [0u8; 1];
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut b)).await;
    assert!(
        early.is_err(),
        "nothing reaches the client while its frame is unfinished"
    );
    s.write_all(rest).await.unwrap();
    let (opcode, payload) = read_frame(s).await;
    assert_eq!(opcode, 0x88, "the next frame is the close");
    assert_eq!(payload[..2], 1001u16.to_be_bytes());
    s.write_all(&close_answer()).await.unwrap();
    let mut after = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut after))
        .await
        .expect("closed after the answer")?;
    Ok(after)
}
