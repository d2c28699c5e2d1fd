//! The opening handshake on the fast path: the client's head goes to the backend untouched and
//! the backend's answer comes back: a `101` (the caller promotes the reservation and passes it
//! on), or a refusal, forwarded with its body before both sides are closed.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::dataplane::head::{self, Head};

/// Largest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A status line and body the proxy answers with itself.
pub(super) type Status = (u16, &'static str, &'static str);

/// How the exchange ended.
pub(super) enum Answer {
    /// The backend said `101`: pass this head to the client, then relay.
    Upgraded(Head),
    /// The backend answered something else; forward it as is.
    Refused(Refusal),
    /// The backend failed; answer the client with `status` and count `result`.
    Failed {
        /// `tidegate_upgrades_total{result}`.
        result: &'static str,
        /// What the client gets.
        status: Status,
    },
}

/// A backend's non-101 answer as read so far.
pub(super) struct Refusal {
    head: Head,
    content_length: Option<u64>,
}

const BACKEND_CLOSED: Status = (502, "Bad Gateway", "the backend closed the connection\n");
const BACKEND_INVALID: Status = (
    502,
    "Bad Gateway",
    "the backend sent no valid answer to the upgrade\n",
);
const BACKEND_SLOW: Status = (
    504,
    "Gateway Timeout",
    "the backend did not answer the upgrade in time\n",
);

/// Forwards the request head and reads the backend's answer.
pub(super) async fn exchange(config: &Config, backend: &mut TcpStream, request: Head) -> Answer {
    let failed = |result, status| Answer::Failed { result, status };
    if backend.write_all(&request.bytes).await.is_err() {
        return failed("backend_error", BACKEND_CLOSED);
    }
    drop(request);
    let timeout = config.upstream_handshake_timeout;
    let (response, info) = match head::read_response(backend, MAX_RESPONSE_HEAD, timeout).await {
        Ok(answer) => answer,
        Err(head::Error::Timeout(_)) => return failed("backend_timeout", BACKEND_SLOW),
        Err(_) => return failed("backend_error", BACKEND_INVALID),
    };
    if info.status != 101 {
        let content_length = info.content_length;
        return Answer::Refused(Refusal {
            head: response,
            content_length,
        });
    }
    Answer::Upgraded(response)
}

/// Passes a non-101 answer (and its body, up to its Content-Length or the backend's close) to
/// the client, then closes both. The reservation is released by the caller's drop.
pub(super) async fn forward_refusal(
    mut client: impl tokio::io::AsyncWrite + Unpin,
    mut backend: TcpStream,
    refusal: Refusal,
    timeout: Duration,
) {
    let Refusal {
        head,
        content_length,
    } = refusal;
    let _ = tokio::time::timeout(timeout, async {
        client.write_all(&head.bytes).await?;
        let already = (head.bytes.len() - head.len) as u64;
        match content_length {
            Some(total) => {
                let rest = total.saturating_sub(already);
                let mut rest = tokio::io::AsyncReadExt::take(&mut backend, rest);
                tokio::io::copy(&mut rest, &mut client).await?;
            }
            None => {
                tokio::io::copy(&mut backend, &mut client).await?;
            }
        }
        client.shutdown().await
    })
    .await;
}
