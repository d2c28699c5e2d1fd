//! The local source: backend processes on this machine, started by local mode's pool
//! (`crate::target::local`). A process is discovered — published as a ready endpoint — once its
//! boot delay has passed and it answers its readiness probe, as a kubelet's probe would make a
//! pod Ready: `tcp` (a connect succeeds) or an HTTP path such as `/healthz` (GET answers 2xx).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the process at `addr` passes `readiness` (`tcp`, or an HTTP path) now.
pub async fn probe(addr: SocketAddr, readiness: &str) -> bool {
    let check = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        if readiness == "tcp" {
            return Some(true);
        }
        let req = format!("GET {readiness} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 2") || head.starts_with(b"HTTP/1.0 2"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_and_http_probes_tell_up_from_down() {
        let (listener, stats) = tidegate_tools::echo::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(tidegate_tools::echo::serve(
            listener,
            stats,
            std::future::pending(),
        ));
        assert!(probe(addr, "tcp").await);
        assert!(probe(addr, "/healthz").await);
        serving.abort();
        let _ = serving.await;
        assert!(!probe(addr, "tcp").await, "nothing listens any more");
    }
}
