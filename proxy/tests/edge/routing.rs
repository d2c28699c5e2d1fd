//! Routing around failures: a killed backend process, a backend that refuses connects, a
//! backend that answers an upgrade with something other than 101; and plain HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `tidegate echo-backend` as a child process on a free port.
struct EchoProcess {
    child: Child,
    addr: SocketAddr,
}

impl EchoProcess {
    fn start() -> EchoProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["echo-backend", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
        EchoProcess { child, addr }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_process_is_released_within_a_second_and_routed_around() {
    let mut doomed = EchoProcess::start();
    let survivor = Backend::start().await;
    let proxy = start_proxy(config(&[doomed.addr, survivor.addr], 100));
    let clients: Vec<_> = futures_util::future::join_all((0..6).map(|_| ws(&proxy))).await;
    let doomed_label = doomed.addr.to_string();
    let on_doomed = live_by_backend(&proxy)
        .await
        .iter()
        .find(|(a, _)| *a == doomed_label)
        .unwrap()
        .1;
    assert_eq!(on_doomed, 3);

    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    let killed = std::time::Instant::now();
    wait_until("the killed backend's count reaches 0", || async {
        live_by_backend(&proxy)
            .await
            .iter()
            .any(|(a, l)| *a == doomed_label && *l == 0)
    })
    .await;
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(1),
        "took {:?}",
        killed.elapsed()
    );

    // New connections all land on the survivor: the dead one refuses and is ejected.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(ws(&proxy).await);
    }
    assert_counts_match(&proxy, &[&survivor]).await;
    assert_eq!(state(&proxy).await["totals"]["live"], 3 + 4);
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_connects_is_ejected_and_the_next_one_used() {
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap() // dropped: connects to it are refused
    };
    let alive = Backend::start().await;
    let proxy = start_proxy(config(&[dead, alive.addr], 100));
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(ws(&proxy).await);
    }
    assert_counts_match(&proxy, &[&alive]).await;
    let s = state(&proxy).await;
    let dead_row = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == dead.to_string())
        .unwrap();
    assert_eq!(dead_row["ejected"], true);
    assert_eq!(dead_row["pending"], 0);
    let m = metrics(&proxy).await;
    assert!(
        sample(
            &m,
            &format!("tidegate_backend_connect_failures_total{{backend=\"{dead}\"}}")
        ) >= Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_101_answer_is_passed_on_and_the_slot_released() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!")
                    .await;
            });
        }
    });
    let proxy = start_proxy(config(&[backend], 100));
    let err = try_ws(&proxy).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // The client may read the 403 a moment before the proxy drops the reservation.
    wait_until("the slot is released", || async {
        let s = state(&proxy).await;
        (
            s["totals"]["live"].as_u64(),
            s["totals"]["pending"].as_u64(),
        ) == (Some(0), Some(0))
    })
    .await;
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(
            &m,
            &format!("tidegate_upgrades_total{{backend=\"{backend}\",result=\"refused\"}}")
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_proxied_and_counted() {
    let backend = Backend::start().await;
    let proxy = start_proxy(config(&[backend.addr], 100));
    let answer = get(proxy.traffic_addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let series = format!(
        "tidegate_http_requests_total{{backend=\"{}\",code_class=\"2xx\"}}",
        backend.addr
    );
    // The client can see the end of the response a moment before pingora logs and drops the
    // request: wait for both.
    wait_until("the request is counted and no longer in flight", || async {
        sample(&metrics(&proxy).await, &series) == Some(1.0)
            && state(&proxy).await["backends"][0]["inflight_requests"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_a_kept_alive_connection_is_counted_too() {
    let backend = Backend::start().await;
    let proxy = start_proxy(config(&[backend.addr], 100));
    let mut s = tokio::net::TcpStream::connect(proxy.traffic_addr)
        .await
        .unwrap();
    // First a plain request (keep-alive), then an upgrade on the same connection.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n\r\nok\n") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"));
    let url = format!("ws://{}/", proxy.traffic_addr);
    let (mut ws, resp) = tokio_tungstenite::client_async(url, s).await.unwrap();
    assert_eq!(resp.status(), 101);
    echo_once(&mut ws, "on a reused connection").await;
    assert_counts_match(&proxy, &[&backend]).await;
    drop(ws);
    wait_until("released", || async {
        state(&proxy).await["totals"]["live"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_gives_its_slot_back_before_the_refusal_is_passed_on() {
    use crate::support::recording::{Recording, Step};
    let backend = Recording::start(vec![
        Step::Send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nnope"),
        Step::Hold,
        Step::Send(b" nope!"),
        Step::Record,
    ])
    .await;
    for fast_path in [true, false] {
        let mut c = config(&[backend.addr], 1);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let request = upgrade_request("Connection: Upgrade\r\n");
        let (mut s, head) = open_raw(proxy.traffic_addr, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
        // The backend holds the rest of its body; the slot is free already.
        wait_until(
            "the slot is given back while the refusal is forwarded",
            || async {
                let s = state(&proxy).await;
                (
                    s["totals"]["pending"].as_u64(),
                    s["totals"]["live"].as_u64(),
                ) == (Some(0), Some(0))
            },
        )
        .await;
        backend.release();
        let mut body = [0u8; 10];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"nope nope!", "fast path {fast_path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_before_the_101_are_skipped() {
    use crate::support::recording::{Recording, Step};
    let backend = Recording::start(vec![
        Step::Send(b"HTTP/1.1 100 Continue\r\n\r\n"),
        Step::Send(b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n"),
        Step::Upgrade,
        Step::Echo,
    ])
    .await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let mut c = config(&[backend.addr], 10);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let mut ws = ws(&proxy).await;
        echo_once(&mut ws, "after two interim answers").await;
        assert_eq!(
            state(&proxy).await["totals"]["live"],
            1,
            "fast path {fast_path}"
        );
        assert!(backend.conns().len() == i + 1);
    }
}
