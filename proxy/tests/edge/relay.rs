//! The relay on paused time: an idle tunnel outlives pingora's 60 s downstream read timeout
//! (which tidegate's fast path never arms) and ends only at its own idle timeout — proven in
//! milliseconds of real time over real loopback sockets.

use std::time::Duration;

use tidegate_proxy::dataplane::relay::{End, relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn an_idle_tunnel_outlives_sixty_seconds_and_ends_at_its_idle_timeout() {
    let (mut client, mut proxy_client_side) = pair().await;
    let (mut proxy_backend_side, mut backend) = pair().await;
    let idle = Duration::from_secs(3600);
    let tunnel =
        tokio::spawn(
            async move { relay(&mut proxy_client_side, &mut proxy_backend_side, idle).await },
        );

    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(
        !tunnel.is_finished(),
        "the tunnel must survive 61 s of silence"
    );
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    backend.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    backend.write_all(b"pong").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");

    // Activity re-armed the timer: 59 min later it is still open, after 61 more it is closed.
    tokio::time::advance(Duration::from_secs(59 * 60)).await;
    assert!(!tunnel.is_finished());
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(tunnel.await.unwrap(), End::IdleTimeout);
}

#[tokio::test]
async fn bytes_flow_both_ways_under_backpressure_and_a_close_is_passed_on() {
    let (mut client, mut proxy_client_side) = pair().await;
    let (mut proxy_backend_side, mut backend) = pair().await;
    let tunnel = tokio::spawn(async move {
        relay(
            &mut proxy_client_side,
            &mut proxy_backend_side,
            Duration::from_secs(60),
        )
        .await
    });
    // 8 MiB one way while the backend reads slowly: the relay must keep every byte, in order.
    let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        client
    });
    let mut got = Vec::new();
    backend.read_to_end(&mut got).await.unwrap();
    assert!(got == expected, "relayed bytes differ");
    assert_eq!(tunnel.await.unwrap(), End::ClientClosed);
    drop(writer.await.unwrap());
}
