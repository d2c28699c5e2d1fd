//! A scripted backend that records every byte it receives: the request head (after any PROXY
//! header), what follows it, and when it answered — so tests can check what reached a backend
//! and in which order, not just what the client saw.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// One step of the backend's answer, run in order once the request head is complete.
#[derive(Clone, Debug)]
pub enum Step {
    /// Sends these bytes as they are (a refusal, an interim `100`, a partial body …).
    Send(&'static [u8]),
    /// Sends a valid `101` for the request's `Sec-WebSocket-Key`.
    Upgrade,
    /// Waits until the test calls [`Recording::release`].
    Hold,
    /// Serves a WebSocket echo on the connection (after [`Step::Upgrade`]); bytes already read
    /// past the head are fed to it first.
    Echo,
    /// Keeps reading and recording until the peer closes.
    Record,
}

/// What one connection delivered.
#[derive(Debug, Default)]
pub struct Conn {
    bytes: Mutex<Vec<u8>>,
    /// (length of the PROXY header, end of the request head), once the head is complete.
    head: Mutex<Option<(usize, usize)>>,
    /// Bytes received before the first byte of the answer was written.
    before_answer: Mutex<Option<usize>>,
    closed: Mutex<bool>,
}

impl Conn {
    /// Every byte received so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// The PROXY header (empty if none).
    pub fn proxy_header(&self) -> Vec<u8> {
        let (proxy, _) = self.head.lock().unwrap().unwrap_or_default();
        self.bytes.lock().unwrap()[..proxy].to_vec()
    }

    /// The request head as text, PROXY header excluded.
    pub fn head(&self) -> String {
        let (proxy, end) = self.head.lock().unwrap().expect("a complete head");
        String::from_utf8_lossy(&self.bytes.lock().unwrap()[proxy..end]).into_owned()
    }

    /// The values of header `name` in the request head, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head()
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// Bytes received after the request head.
    pub fn after_head(&self) -> Vec<u8> {
        let (_, end) = self.head.lock().unwrap().expect("a complete head");
        self.bytes.lock().unwrap()[end..].to_vec()
    }

    /// How many bytes had arrived when the backend started answering.
    pub fn received_before_answer(&self) -> Option<usize> {
        *self.before_answer.lock().unwrap()
    }

    /// Whether the peer has closed the connection.
    pub fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }
}

/// The backend: a listener on 127.0.0.1 port 0 running `script` on every connection.
pub struct Recording {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recording {
    pub async fn start(script: Vec<Step>) -> Recording {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let release = Arc::new(Notify::new());
        let script = Arc::new(script);
        let (c, r) = (Arc::clone(&conns), Arc::clone(&release));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = Arc::new(Conn::default());
                c.lock().unwrap().push(Arc::clone(&conn));
                let (script, release) = (Arc::clone(&script), Arc::clone(&r));
                tokio::spawn(serve(stream, conn, script, release));
            }
        });
        Recording {
            addr,
            conns,
            release,
            task,
        }
    }

    /// A backend that accepts every upgrade and echoes WebSocket messages.
    pub async fn upgrading() -> Recording {
        Recording::start(vec![Step::Upgrade, Step::Echo]).await
    }

    /// The connections accepted so far, oldest first.
    pub fn conns(&self) -> Vec<Arc<Conn>> {
        self.conns.lock().unwrap().clone()
    }

    /// The `i`-th connection, waiting (with the harness deadline) until it has a whole head.
    pub async fn conn(&self, i: usize) -> Arc<Conn> {
        let mut found = None;
        super::wait_until(&format!("backend connection {i} with a head"), || {
            let c = self.conns().get(i).cloned();
            let ready = c.as_ref().is_some_and(|c| c.head.lock().unwrap().is_some());
            found = c;
            async move { ready }
        })
        .await;
        found.unwrap()
    }

    /// Lets every connection waiting at a [`Step::Hold`] go on (one per call).
    pub fn release(&self) {
        self.release.notify_one();
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: Arc<Conn>,
    script: Arc<Vec<Step>>,
    release: Arc<Notify>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return *conn.closed.lock().unwrap() = true,
            Ok(n) => n,
        };
        let mut bytes = conn.bytes.lock().unwrap();
        bytes.extend_from_slice(&buf[..n]);
        if let Some(head) = find_head(&bytes) {
            *conn.head.lock().unwrap() = Some(head);
            break;
        }
    }
    for step in script.iter() {
        if conn.before_answer.lock().unwrap().is_none() && !matches!(step, Step::Hold) {
            let received = conn.bytes.lock().unwrap().len();
            *conn.before_answer.lock().unwrap() = Some(received);
        }
        match step {
            Step::Send(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Step::Upgrade => {
                let key = conn.header("sec-websocket-key").pop().unwrap_or_default();
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Step::Hold => release.notified().await,
            Step::Echo => return echo(stream, conn).await,
            Step::Record => return record(stream, conn).await,
        }
    }
}

async fn echo(stream: TcpStream, conn: Arc<Conn>) {
    let already = conn.after_head();
    let mut ws = WebSocketStream::from_partially_read(stream, already, Role::Server, None).await;
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
    *conn.closed.lock().unwrap() = true;
}

async fn record(mut stream: TcpStream, conn: Arc<Conn>) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return *conn.closed.lock().unwrap() = true,
            Ok(n) => conn.bytes.lock().unwrap().extend_from_slice(&buf[..n]),
        }
    }
}

/// (PROXY header length, end of the request head) once `bytes` hold a whole head.
fn find_head(bytes: &[u8]) -> Option<(usize, usize)> {
    const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let proxy = if bytes.starts_with(V2) {
        let len = u16::from_be_bytes([*bytes.get(14)?, *bytes.get(15)?]);
        16 + usize::from(len)
    } else if bytes.starts_with(b"PROXY ") {
        bytes.windows(2).position(|w| w == b"\r\n")? + 2
    } else {
        0
    };
    let rest = bytes.get(proxy..)?;
    let end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((proxy, proxy + end))
}
