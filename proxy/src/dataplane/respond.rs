//! Short answers the proxy writes itself (400, 408, 431, 502, 503, 504), always with
//! `Connection: close` and a one-line body that says what happened.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most time spent writing one of these answers (or an admin answer) to a slow client.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes a complete response and flushes it; errors are ignored (the client may be gone).
pub async fn simple(
    stream: &mut (impl AsyncWrite + Unpin),
    status: u16,
    reason: &str,
    extra_headers: &[(&str, String)],
    body: &str,
) {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await
    })
    .await;
}
