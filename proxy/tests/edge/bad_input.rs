//! Malformed, oversized and slow requests get 400 / 431 / 408 and a metric, and leave every
//! live connection and count as it was.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_answered_and_leave_counts_intact() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    c.request_header_timeout = Duration::from_millis(300);
    c.max_request_header_bytes = 2048;
    let proxy = start_proxy(c);
    let mut live = [ws(&proxy).await, ws(&proxy).await];

    let malformed = raw(proxy.traffic_addr, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(malformed.starts_with("HTTP/1.1 400 "), "{malformed}");

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4096)
    );
    let too_large = raw(proxy.traffic_addr, huge.as_bytes()).await;
    assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");

    // Slowloris: half a head, then silence.
    let mut slow = TcpStream::connect(proxy.traffic_addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, slow.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");

    // A client that connects and leaves without a byte.
    drop(TcpStream::connect(proxy.traffic_addr).await.unwrap());

    for (i, c) in live.iter_mut().enumerate() {
        echo_once(c, &format!("still here {i}")).await;
    }
    assert_counts_match(&proxy, &[&backend]).await;
    let m = metrics(&proxy).await;
    for reason in ["malformed_request", "header_too_large", "header_timeout"] {
        let series = format!("tidegate_bad_requests_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&m, &series), Some(1.0), "{series}");
    }
    assert_eq!(state(&proxy).await["totals"]["pending"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_client_that_stops_reading_is_let_go() {
    // Enough backends that /metrics is megabytes: more than the kernel buffers a client with a
    // tiny receive window can hold, so the proxy's write blocks.
    let backends: Vec<std::net::SocketAddr> = (0..12_000u32)
        .map(|i| std::net::SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 9)))
        .collect();
    let proxy = start_proxy(config(&backends, 10));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&proxy.admin_addr.into()).unwrap();
    let mut stuck = std::net::TcpStream::from(socket);
    std::io::Write::write_all(&mut stuck, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let me = stuck.local_addr().unwrap();
    wait_until(
        "the admin listener is writing to the stuck client",
        || async { sockets_between(proxy.admin_addr, me).len() == 1 },
    )
    .await;
    // It gives up after its write timeout (5 s), well within the harness deadline.
    wait_until("the admin listener lets the stuck client go", || async {
        sockets_between(proxy.admin_addr, me).is_empty()
    })
    .await;
    drop(stuck);
}
