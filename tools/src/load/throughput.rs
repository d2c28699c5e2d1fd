//! Throughput of binary echoes: each connection keeps up to `window` messages in flight
//! (pipelined, echoed back) until its share of `messages` has come back; reports messages/s
//! and the proxy's CPU seconds per million messages.

use super::{
    Error, close_all,
    endpoint::{Endpoint, Ws},
    open_many, procstat,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections that share the messages.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Messages in all (each sent and echoed once).
    pub messages: u64,
    /// Messages in flight per connection.
    pub window: u64,
    /// The proxy process whose CPU time is read, if any.
    pub pid: Option<u32>,
}

/// The result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Connections used.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Messages echoed.
    pub messages: u64,
    /// Wall-clock seconds from first send to last echo.
    pub elapsed_s: f64,
    /// Echoed messages per second.
    pub msgs_per_s: f64,
    /// Proxy CPU seconds (user + system) over the run; `null` without `--pid`.
    pub proxy_cpu_s: Option<f64>,
    /// Proxy CPU seconds per million messages; `null` without `--pid`.
    pub cpu_s_per_million: Option<f64>,
}

/// Opens the connections, pumps the messages, reports.
pub async fn run(target: &Endpoint, config: &Config) -> Result<Report, Error> {
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(64 * 1024);
    let conns = open_many(config.connections, 64, || target.connect(ws_config)).await?;
    let payload = Bytes::from(vec![0x5a; config.size]);
    let n = conns.len().max(1) as u64;
    let started = Instant::now();
    let work = async {
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                let share = config.messages / n + u64::from((i as u64) < config.messages % n);
                tokio::spawn(pump(ws, payload.clone(), share, config.window.max(1)))
            })
            .collect();
        let mut open = Vec::with_capacity(tasks.len());
        for task in tasks {
            open.push(
                task.await
                    .map_err(|_| Error::Protocol("throughput task panicked"))??,
            );
        }
        Ok(open)
    };
    let (open, cpu) = procstat::cpu_during(config.pid, work).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    close_all(open, 64).await;
    let millions = config.messages as f64 / 1e6;
    Ok(Report {
        connections: config.connections,
        size: config.size,
        messages: config.messages,
        elapsed_s,
        msgs_per_s: config.messages as f64 / elapsed_s,
        proxy_cpu_s: cpu,
        cpu_s_per_million: cpu.map(|s| s / millions),
    })
}

/// Sends `count` copies of `payload`, never more than `window` unanswered, until all came back.
async fn pump(mut ws: Ws, payload: Bytes, count: u64, window: u64) -> Result<Ws, Error> {
    let (mut sent, mut received) = (0u64, 0u64);
    while received < count {
        while sent < count && sent - received < window {
            ws.feed(Message::Binary(payload.clone())).await?;
            sent += 1;
        }
        ws.flush().await?;
        match ws.next().await {
            Some(Ok(Message::Binary(data))) if data.len() == payload.len() => received += 1,
            Some(Ok(Message::Binary(_))) => {
                return Err(Error::Protocol("echo of a different size"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(Error::Protocol("connection closed mid-run")),
        }
    }
    Ok(ws)
}
