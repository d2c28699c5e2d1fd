//! Slow clients (slowloris): connections that each send an HTTP request head one byte at a
//! time, one byte every `every`, never finishing it, and record how and when the server
//! answered. A server that bounds the time a request head may take answers each with a 408
//! (or closes it) at that bound; one that does not is held open until `give_up`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Error, latency};

/// The request head dripped out: long enough that it never completes before `give_up`.
const HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nHost: slow.example\r\nUser-Agent: tidegate-slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Slow connections opened.
    pub connections: usize,
    /// One byte is sent this often.
    pub every: Duration,
    /// TCP connects in flight at once while opening.
    pub concurrency: usize,
    /// A connection still unanswered after this long is closed and counted as held.
    pub give_up: Duration,
}

/// How the server treated the slow connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Connections opened.
    pub connections: u64,
    /// Answers by HTTP status code.
    pub answered: BTreeMap<u16, u64>,
    /// Connections the server closed without an answer.
    pub closed: u64,
    /// Connections still unanswered at `give_up` (the server held them).
    pub held: u64,
    /// TCP connects that failed.
    pub connect_errors: u64,
    /// Time from the start of the connect to the answer or close, in milliseconds: fastest, median, slowest.
    pub answer_ms: [f64; 3],
    /// Most bytes of the head one connection had sent when it was answered.
    pub bytes_sent_max: u64,
}

/// How one connection ended.
enum End {
    Answered(u16),
    Closed,
    Held,
    ConnectError,
}

/// Opens the slow connections, `concurrency` connects at a time, and waits for every one to
/// end.
pub async fn run(addr: SocketAddr, config: &Config) -> Result<Report, Error> {
    let (every, give_up) = (config.every, config.give_up);
    let tasks: Vec<_> = stream::iter(0..config.connections)
        .map(|_| async move {
            // Timed from before the connect: the server's timer starts at its accept, after
            // this, so an answer is never timed shorter than the server's timeout.
            let start = Instant::now();
            let s = TcpStream::connect(addr).await.ok()?;
            Some(tokio::spawn(drip(s, start, every, give_up)))
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut ends = Vec::with_capacity(tasks.len());
    for task in tasks {
        ends.push(match task {
            Some(t) => t.await.unwrap_or((End::Closed, Duration::ZERO, 0)),
            None => (End::ConnectError, Duration::ZERO, 0),
        });
    }
    Ok(report(&ends))
}

fn report(ends: &[(End, Duration, u64)]) -> Report {
    let mut r = Report {
        connections: ends.len() as u64,
        ..Report::default()
    };
    let mut times: Histogram<u64> = latency::new_histogram();
    for (end, took, sent) in ends {
        match end {
            End::Answered(code) => *r.answered.entry(*code).or_default() += 1,
            End::Closed => r.closed += 1,
            End::Held => r.held += 1,
            End::ConnectError => {
                r.connect_errors += 1;
                r.connections -= 1;
                continue;
            }
        }
        times.saturating_record((took.as_nanos() as u64).clamp(1, latency::MAX_NS));
        r.bytes_sent_max = r.bytes_sent_max.max(*sent);
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    r.answer_ms = [
        ms(times.min()),
        ms(times.value_at_quantile(0.5)),
        ms(times.max()),
    ];
    r
}

/// One slow connection, connected since `start`: a byte now and every `every`, until the
/// server answers or closes, or `give_up` after `start`.
async fn drip(
    mut s: TcpStream,
    start: Instant,
    every: Duration,
    give_up: Duration,
) -> (End, Duration, u64) {
    let mut ticks = tokio::time::interval(every);
    let mut sent = 0usize;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let end = loop {
        tokio::select! {
            _ = ticks.tick(), if sent < HEAD.len() => {
                // A failed write means the server is closing: what it said is still readable.
                if s.write_all(&HEAD[sent..=sent]).await.is_ok() {
                    sent += 1;
                }
            }
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => break status(&answer).map_or(End::Closed, End::Answered),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if let Some(code) = status(&answer) {
                        break End::Answered(code);
                    }
                }
            },
            () = tokio::time::sleep_until(start + give_up) => break End::Held,
        }
    };
    (end, start.elapsed(), sent as u64)
}

/// The status code of an HTTP/1.x status line, once it is complete.
fn status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    if !answer.contains(&b'\n') {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_a_complete_status_line_only() {
        assert_eq!(status(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status(b"HTTP/1.1 408 Req"), None);
        assert_eq!(status(b"nonsense\r\n"), None);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_holds_them_and_one_that_closes_is_seen() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                n += 1;
                if n % 2 == 0 {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = s.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await;
                    });
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        drop(s);
                    });
                }
            }
        });
        let config = Config {
            connections: 4,
            every: Duration::from_millis(10),
            concurrency: 1,
            give_up: Duration::from_millis(400),
        };
        let r = run(addr, &config).await.unwrap();
        assert_eq!(
            (r.connections, r.answered.get(&408), r.held),
            (4, Some(&2), 2)
        );
        assert!(r.bytes_sent_max >= 1);
    }
}
