//! A minimal WebSocket echo server: the fallback backend for `benches/peers.sh` until
//! `tidegate echo-backend` exists, and the backend of this crate's own tests.
//!
//! Echoes text and binary messages, answers a plain `GET /healthz` with 200, and leaves pings
//! and the close handshake to tungstenite.

use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const HEALTHZ: &[u8; 12] = b"GET /healthz";

/// Accepts and serves connections until `shutdown` completes or accepting fails.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        tokio::spawn(connection(stream));
    }
}

/// Serves one connection: `/healthz` or a WebSocket echo; errors end the connection quietly.
async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut head = [0u8; 12];
    if matches!(stream.peek(&mut head).await, Ok(12)) && &head == HEALTHZ {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n";
        let _ = stream.write_all(ok).await;
        return;
    }
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
