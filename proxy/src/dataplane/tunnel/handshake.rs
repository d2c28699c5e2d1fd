//! The opening handshake on the fast path: the rewritten head goes to the backend and its
//! answer comes back — interim `1xx` answers (`100 Continue`, `103 Early Hints`) skipped, a few
//! at most — as a `101` (the caller promotes the reservation and passes it on), or a refusal,
//! forwarded with its body before both sides are closed.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::Config;
use crate::dataplane::head::{self, Head};

/// Largest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most interim (`1xx` other than `101`) answers skipped before the real one.
const MAX_INTERIM: usize = 8;

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

/// Sends `request` (the rewritten head, freed once written) and reads the backend's answer,
/// skipping interim ones, all within `upstream_handshake_timeout`.
pub(super) async fn exchange(config: &Config, backend: &mut TcpStream, request: Vec<u8>) -> Answer {
    let failed = |result, status| Answer::Failed { result, status };
    let written = backend.write_all(&request).await;
    drop(request);
    if written.is_err() {
        return failed("backend_error", BACKEND_CLOSED);
    }
    let deadline = Instant::now() + config.upstream_handshake_timeout;
    let mut already = Vec::new();
    for _ in 0..=MAX_INTERIM {
        let read = head::read_response(backend, already, MAX_RESPONSE_HEAD, deadline).await;
        let (response, info) = match read {
            Ok(answer) => answer,
            Err(head::Error::Timeout(_)) => return failed("backend_timeout", BACKEND_SLOW),
            Err(_) => return failed("backend_error", BACKEND_INVALID),
        };
        match info.status {
            101 => return Answer::Upgraded(response),
            100..=199 => {
                let Head { mut bytes, len } = response;
                bytes.drain(..len);
                already = bytes;
            }
            _ => {
                let content_length = info.content_length;
                return Answer::Refused(Refusal {
                    head: response,
                    content_length,
                });
            }
        }
    }
    failed("backend_error", BACKEND_INVALID)
}

/// After the `101`: sends the backend what the client wrote after its head in the same reads
/// (its first frames, if it did not wait), within `upstream_handshake_timeout`. False if the
/// backend did not take them.
pub(super) async fn pass_held(config: &Config, backend: &mut TcpStream, request: Head) -> bool {
    let held = request.tail();
    if held.is_empty() {
        return true;
    }
    let timeout = config.upstream_handshake_timeout;
    matches!(
        tokio::time::timeout(timeout, backend.write_all(held)).await,
        Ok(Ok(()))
    )
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
