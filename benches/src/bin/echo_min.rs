//! `echo_min`: a minimal WebSocket echo server (see `tidegate_benches::echo`), the fallback
//! backend of `benches/peers.sh` until `tidegate echo-backend` exists. Loopback only.

use anyhow::{Context as _, bail};
use clap::Parser;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Minimal WebSocket echo server on one thread; also answers GET /healthz with 200.
#[derive(Debug, Parser)]
struct Cli {
    /// Address to listen on, e.g. 127.0.0.1:9001 (loopback only).
    #[arg(long)]
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        bail!("--listen must be a loopback address, got {}", cli.listen);
    }
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(tidegate_benches::echo::serve(listener, shutdown).await?)
}
