//! TCP keepalive (and no Nagle) on both legs of every proxied connection, read back from the
//! proxy's own sockets (this process's descriptors, duplicated with `pidfd_getfd`) with
//! `getsockopt`. The client leg's options come from the listening socket (Linux copies them
//! to the connections it accepts); a reload that changes them is in `reload.rs`.

use std::time::Duration;

use crate::support::*;
use tidegate_proxy::config::{Keepalive, TcpKeepalive};

/// (on, idle, interval, count) of one socket.
pub fn keepalive_of(fd: &std::os::fd::OwnedFd) -> (bool, Duration, Duration, u32) {
    let s = socket2::SockRef::from(fd);
    (
        s.keepalive().unwrap(),
        s.tcp_keepalive_time().unwrap(),
        s.tcp_keepalive_interval().unwrap(),
        s.tcp_keepalive_retries().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_is_set_on_the_client_and_backend_sockets_on_both_paths() {
    let backend = Backend::start().await;
    let settings = TcpKeepalive {
        idle: Duration::from_secs(31),
        interval: Duration::from_secs(7),
        count: 4,
    };
    for fast_path in [true, false] {
        for keepalive in [Keepalive(Some(settings)), Keepalive(None)] {
            let case = format!("fast path {fast_path}, {keepalive:?}");
            let mut c = config(&[backend.addr], 10);
            c.websocket_fast_path = fast_path;
            c.tcp_keepalive = keepalive;
            let proxy = start_proxy(c);
            // The second connection: the first one accepted is also set by hand (the listener
            // is set then), the next ones have only what the listener hands down.
            let mut first = ws(&proxy).await;
            echo_once(&mut first, "up").await;
            let mut ws = ws(&proxy).await;
            echo_once(&mut ws, "up").await;
            let accepted = [proxy_end_of(&ws)];
            let upstream = sockets_with_peer(backend.addr);
            assert_eq!(
                upstream.len(),
                2,
                "{case}: the proxy's backend-side sockets"
            );
            for fd in accepted.iter().chain(&upstream) {
                assert!(
                    socket2::SockRef::from(fd).tcp_nodelay().unwrap(),
                    "{case}: TCP_NODELAY"
                );
                let (on, idle, interval, count) = keepalive_of(fd);
                match keepalive.0 {
                    Some(k) => assert_eq!(
                        (on, idle, interval, count),
                        (true, k.idle, k.interval, k.count),
                        "{case}"
                    ),
                    None => assert!(!on, "{case}"),
                }
            }
            drop((first, ws));
            wait_until("closed", || async {
                state(&proxy).await["totals"]["live"] == 0
            })
            .await;
            tokio::task::spawn_blocking(move || proxy.stop_gracefully())
                .await
                .unwrap();
        }
    }
}

#[test]
fn tcp_keepalive_parses_off_or_settings_and_checks_them() {
    let c = tidegate_proxy::config::parse("tcp_keepalive: off\n", "t.yaml").unwrap();
    assert_eq!(c.tcp_keepalive, Keepalive(None));
    let c = tidegate_proxy::config::parse("tcp_keepalive: {idle: 30s}\n", "t.yaml").unwrap();
    let k = c.tcp_keepalive.0.unwrap();
    assert_eq!(
        (k.idle, k.interval, k.count),
        (Duration::from_secs(30), Duration::from_secs(10), 6)
    );
    let c = tidegate_proxy::config::parse("", "t.yaml").unwrap();
    assert_eq!(c.tcp_keepalive.0.unwrap().idle, Duration::from_secs(60));
    for bad in [
        "tcp_keepalive: {idle: 500ms}\n",
        "tcp_keepalive: {count: 0}\n",
        "tcp_keepalive: sometimes\n",
        "tcp_keepalive: {idel: 5s}\n",
    ] {
        let err = tidegate_proxy::config::parse(bad, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tcp_keepalive") || err.contains("idel"),
            "{bad}: {err}"
        );
    }
}
