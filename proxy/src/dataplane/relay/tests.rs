//! The close protocol of the relay, over in-memory streams (the relay is generic over them) on
//! paused time: raw frames in, raw frames out, byte for byte.

use std::sync::Arc;
use std::time::Duration;

use tidegate_common::{Backend, BackendSpec, BackendState, BackendTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;

use super::*;
use crate::dataplane::connections::Connections;

const TIMEOUT: Duration = Duration::from_secs(5);
const KEY: [u8; 4] = [1, 2, 3, 4];

struct Peers {
    client: DuplexStream,
    backend: DuplexStream,
    relay: JoinHandle<End>,
    connections: Arc<Connections>,
}

fn backend() -> Arc<Backend> {
    let table = BackendTable::new();
    let address = "127.0.0.1:9".parse().unwrap();
    table.set_backends([BackendSpec {
        address,
        capacity: 10,
        state: BackendState::Ready,
    }]);
    table.get(address).unwrap()
}

async fn start() -> Peers {
    let connections = Arc::new(Connections::default());
    let (client, mut near_client) = duplex(256 * 1024);
    let (mut near_backend, backend_end) = duplex(256 * 1024);
    let shared = Arc::clone(&connections);
    let relay = tokio::spawn(async move {
        let tracked = shared.track(&backend());
        let relay =
            Relay::new(Duration::from_secs(3600)).closed_by(Arc::clone(tracked.signal()), TIMEOUT);
        relay.run(&mut near_client, &mut near_backend).await
    });
    while connections.websocket_count() == 0 {
        tokio::task::yield_now().await;
    }
    Peers {
        client,
        backend: backend_end,
        relay,
        connections,
    }
}

impl Peers {
    /// Both peers answer the proxy's close.
    async fn answer_both(&mut self) {
        let from_client = frames::close_frame(1001, "", Some(KEY));
        self.client.write_all(&from_client).await.unwrap();
        let from_backend = frames::close_frame(1001, "", None);
        self.backend.write_all(&from_backend).await.unwrap();
    }

    fn ask_close(&self) {
        let mut cursor = 0;
        assert_eq!(
            self.connections.close_next(1, Cause::Shutdown, &mut cursor),
            1
        );
    }
}

/// A binary frame of `len` bytes, masked as a client sends it.
fn client_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x82, 0x80 | 126];
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.extend_from_slice(&KEY);
    f.extend(std::iter::repeat_n(0x55, len));
    f
}

/// Reads one whole frame (header parsed here independently of [`Frames`]); unmasks it.
async fn read_frame(s: &mut DuplexStream) -> (u8, bool, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => usize::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).await.unwrap();
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    if masked {
        payload
            .iter_mut()
            .zip(key.iter().cycle())
            .for_each(|(b, k)| *b ^= k);
    }
    (h[0], masked, payload)
}

fn is_1001(frame: &(u8, bool, Vec<u8>)) -> bool {
    frame.0 == 0x88 && frame.2[..2] == GOING_AWAY.to_be_bytes()
}

async fn nothing_within(s: &mut DuplexStream, d: Duration) -> bool {
    let mut b = [0u8; 1];
    tokio::time::timeout(d, s.read(&mut b)).await.is_err()
}

#[tokio::test(start_paused = true)]
async fn an_idle_websocket_gets_1001_both_ways_and_ends_when_both_answer() {
    let mut p = start().await;
    p.client.write_all(&client_frame(10)).await.unwrap();
    assert_eq!(read_frame(&mut p.backend).await.2.len(), 10);
    p.ask_close();
    let to_client = read_frame(&mut p.client).await;
    assert!(
        is_1001(&to_client) && !to_client.1,
        "unmasked 1001 to the client"
    );
    assert_eq!(&to_client.2[2..], Cause::Shutdown.reason().as_bytes());
    let to_backend = read_frame(&mut p.backend).await;
    assert!(
        is_1001(&to_backend) && to_backend.1,
        "masked 1001 to the backend"
    );
    assert_eq!(to_backend.2, to_client.2);
    p.answer_both().await;
    assert_eq!(p.relay.await.unwrap(), End::ProxyClosed);
    let mut rest = Vec::new();
    p.client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the close frame, then EOF");
}

#[tokio::test(start_paused = true)]
async fn a_frame_in_flight_ends_before_the_close_goes_out() {
    let mut p = start().await;
    let frame = client_frame(1000);
    p.client.write_all(&frame[..300]).await.unwrap();
    let mut got = vec![0u8; 300];
    p.backend.read_exact(&mut got).await.unwrap();
    p.ask_close();
    assert!(
        nothing_within(&mut p.client, Duration::from_secs(1)).await,
        "no close mid-frame"
    );
    // The rest of the frame, and a second frame the client sent before it saw any close.
    p.client.write_all(&frame[300..]).await.unwrap();
    p.client.write_all(&client_frame(20)).await.unwrap();
    let mut rest = vec![0u8; frame.len() - 300];
    p.backend.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, frame[300..], "the frame in flight is passed on whole");
    assert!(
        is_1001(&read_frame(&mut p.backend).await),
        "then the close, not the next frame"
    );
    assert!(is_1001(&read_frame(&mut p.client).await));
    p.answer_both().await;
    assert_eq!(p.relay.await.unwrap(), End::ProxyClosed);
}

#[tokio::test(start_paused = true)]
async fn what_a_backend_sends_after_the_close_is_dropped_and_silence_is_bounded() {
    let mut p = start().await;
    p.ask_close();
    assert!(is_1001(&read_frame(&mut p.client).await));
    assert!(is_1001(&read_frame(&mut p.backend).await));
    let mut late = vec![0x81, 3];
    late.extend_from_slice(b"hey");
    p.backend.write_all(&late).await.unwrap();
    p.backend
        .write_all(&frames::close_frame(1001, "", None))
        .await
        .unwrap();
    // The client never answers.
    let started = Instant::now();
    assert_eq!(p.relay.await.unwrap(), End::CloseUnanswered);
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(1));
    let mut rest = Vec::new();
    p.client.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "the late text frame never reached the client: {rest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_frame_that_never_ends_is_cut_without_a_close() {
    let mut p = start().await;
    p.client
        .write_all(&client_frame(1000)[..100])
        .await
        .unwrap();
    let mut got = vec![0u8; 100];
    p.backend.read_exact(&mut got).await.unwrap();
    p.ask_close();
    assert_eq!(p.relay.await.unwrap(), End::Cut);
    let mut rest = Vec::new();
    p.client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_close_handshake_already_under_way_is_left_to_finish() {
    let mut p = start().await;
    p.backend
        .write_all(&frames::close_frame(1000, "bye", None))
        .await
        .unwrap();
    let first = read_frame(&mut p.client).await;
    assert_eq!(first.2[..2], 1000u16.to_be_bytes());
    p.ask_close();
    p.client
        .write_all(&frames::close_frame(1000, "", Some(KEY)))
        .await
        .unwrap();
    let reply = read_frame(&mut p.backend).await;
    assert_eq!(
        reply.2[..2],
        1000u16.to_be_bytes(),
        "the client's own answer, no 1001"
    );
    drop(p.backend);
    assert_eq!(p.relay.await.unwrap(), End::BackendClosed);
}

#[tokio::test(start_paused = true)]
async fn a_cut_ends_at_once_and_plain_relays_ignore_nothing() {
    let p = start().await;
    assert_eq!(p.connections.cut_all(), 1);
    assert_eq!(p.relay.await.unwrap(), End::Cut);

    let (mut client, mut near_client) = duplex(1024);
    let (mut near_backend, mut backend) = duplex(1024);
    let plain = tokio::spawn(async move {
        relay(&mut near_client, &mut near_backend, Duration::from_secs(10)).await
    });
    client.write_all(b"not even frames").await.unwrap();
    let mut got = [0u8; 15];
    backend.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"not even frames");
    assert_eq!(plain.await.unwrap(), End::IdleTimeout);
}
