//! The WebSocket echo backend (`tidegate echo-backend`): the backend of tests, benchmarks and
//! `tidegate demo`.
//!
//! Every text or binary message is sent back as is; pings and the close handshake are left to
//! tungstenite; `GET /healthz` answers 200. Each connection holds only tungstenite's state, so
//! thousands of idle ones are cheap.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// Counters and controls of a running echo server.
#[derive(Debug, Default)]
pub struct Stats {
    open: AtomicUsize,
    peak: AtomicUsize,
    accepted: AtomicUsize,
    received: AtomicU64,
    close_one: Notify,
    /// The code of every close frame received (`None`: a close frame without one).
    closes: std::sync::Mutex<Vec<Option<u16>>>,
}

impl Stats {
    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most WebSockets open at once since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// WebSockets accepted since start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Bytes read from WebSocket clients since start, handshakes included: a test waits on it
    /// to know that the start of a frame has arrived (tungstenite says nothing until the whole
    /// frame has).
    pub fn received_bytes(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// The code of every close frame received from clients so far, in order (`None` for a
    /// close frame without a code). tungstenite refuses unmasked frames from a client, so each
    /// one here arrived masked.
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, Arc<Stats>)> {
    Ok((TcpListener::bind(addr).await?, Arc::default()))
}

/// Accepts connections until `shutdown` completes (connections already open keep running on
/// the runtime); pass `std::future::pending()` to serve forever.
pub async fn serve(listener: TcpListener, stats: Arc<Stats>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        match accepted {
            Ok((stream, _)) => drop(tokio::spawn(connection(stream, Arc::clone(&stats)))),
            Err(e) => {
                // Out of descriptors and the like: keep what is open, try again shortly.
                debug!(error = %e, "echo accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    if is_health_check(&stream).await {
        // No `Connection: close`: a proxy in front may keep its client connection alive.
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        let _ = stream.write_all(ok.as_bytes()).await;
        return;
    }
    let stream = Counted {
        stream,
        stats: Arc::clone(&stats),
    };
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    stats.accepted.fetch_add(1, Ordering::SeqCst);
    let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
    stats.peak.fetch_max(open, Ordering::SeqCst);
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
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    stats.closes.lock().unwrap_or_else(|p| p.into_inner()).push(code);
                }
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

/// A client's stream that adds what is read from it to [`Stats::received_bytes`].
struct Counted {
    stream: TcpStream,
    stats: Arc<Stats>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        this.stats.received.fetch_add(read, Ordering::SeqCst);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
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

/// Runs an echo server on a runtime of its own until SIGINT or SIGTERM, printing the bound
/// address first (port 0 picks a free port).
pub fn run_blocking(addr: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (listener, stats) = bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().unwrap_or(addr);
        println!("echo backend listening on {local}");
        serve(listener, stats, crate::signals::terminated()).await;
        Ok(())
    })
}
