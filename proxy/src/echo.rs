//! A small WebSocket echo server: the backend of tests, benchmarks and `tidegate demo`.
//!
//! Every text or binary message is sent back as is; `GET /healthz` answers 200. Each
//! connection holds only tungstenite's state, so thousands of idle ones are cheap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// Counters and controls of a running echo server.
#[derive(Debug, Default)]
pub struct EchoStats {
    open: AtomicUsize,
    accepted: AtomicUsize,
    close_one: Notify,
}

impl EchoStats {
    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// WebSockets accepted since start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes `n` open WebSockets from the server side (oldest waiting first), as a backend
    /// that ends sessions would.
    pub fn close_connections(&self, n: usize) {
        for _ in 0..n {
            self.close_one.notify_one();
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with the stats handle.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, Arc<EchoStats>)> {
    Ok((TcpListener::bind(addr).await?, Arc::default()))
}

/// Accepts connections forever.
pub async fn serve(listener: TcpListener, stats: Arc<EchoStats>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => drop(tokio::spawn(connection(stream, Arc::clone(&stats)))),
            Err(e) => {
                debug!(error = %e, "echo accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, stats: Arc<EchoStats>) {
    let _ = stream.set_nodelay(true);
    if is_health_check(&stream).await {
        // No `Connection: close`: a proxy in front may keep its client connection alive.
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        let _ = stream.write_all(ok.as_bytes()).await;
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    stats.accepted.fetch_add(1, Ordering::SeqCst);
    stats.open.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                // tungstenite answers a Close by itself; reading on flushes the answer and
                // ends with `None` once the closing handshake is done.
                Some(Ok(Message::Close(_))) => {}
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            () = stats.close_one.notified() => {
                let _ = ws.close(None).await;
                break;
            }
        }
    }
    stats.open.fetch_sub(1, Ordering::SeqCst);
}

/// Looks at the request line without consuming it.
async fn is_health_check(stream: &TcpStream) -> bool {
    const PROBE: &[u8] = b"GET /healthz";
    let mut buf = [0u8; PROBE.len()];
    for _ in 0..50 {
        match stream.peek(&mut buf).await {
            Ok(n) if n >= PROBE.len() || !PROBE.starts_with(&buf[..n]) => {
                return buf[..n] == *PROBE;
            }
            Ok(0) | Err(_) => return false,
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    false
}

/// Runs an echo server in the foreground until SIGINT or SIGTERM; prints the bound address.
pub fn run_blocking(addr: SocketAddr) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidegate echo-backend: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (listener, stats) = match bind(addr).await {
            Ok(bound) => bound,
            Err(e) => {
                eprintln!("tidegate echo-backend: cannot listen on {addr}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().map_or(addr, |a| a);
        println!("echo backend listening on {local}");
        tokio::select! {
            () = serve(listener, stats) => {}
            () = crate::signals::terminated() => {}
        }
        std::process::ExitCode::SUCCESS
    })
}
