//! The tracker against a whole-buffer parser: unit cases, then property tests over arbitrary
//! frame sequences cut at arbitrary places, and over arbitrary bytes. `PROPTEST_CASES=100000`
//! runs them longer than CI does.

use proptest::prelude::*;

use super::*;

/// One frame: first byte (FIN, RSV, opcode) as given, the payload length in the chosen
/// encoding (7, 16 or 64 bits — not necessarily the shortest), masked or not.
fn frame(first: u8, len: usize, encoding: u8, mask: Option<[u8; 4]>, fill: u8) -> Vec<u8> {
    let mut f = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match encoding {
        7 => f.push(m | len as u8),
        16 => {
            f.push(m | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(m | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        f.extend_from_slice(&key);
    }
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(fill)));
    f
}

/// Offsets of every boundary in `bytes` parsed whole: 0, then the end of each complete frame.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0];
    let mut at = 0;
    while bytes.len() >= at + 2 {
        let (masked, len7) = (bytes[at + 1] & 0x80 != 0, bytes[at + 1] & 0x7f);
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext + if masked { 4 } else { 0 };
        if bytes.len() < at + header {
            break;
        }
        let len = match ext {
            0 => u64::from(len7),
            _ => bytes[at + 2..at + 2 + ext]
                .iter()
                .fold(0u64, |n, b| (n << 8) | u64::from(*b)),
        };
        let end = (at + header) as u64 + len;
        if end > bytes.len() as u64 {
            break;
        }
        at = end as usize;
        out.push(at);
    }
    out
}

#[test]
fn small_frames_end_where_their_length_says() {
    let text = frame(0x81, 5, 7, None, 1);
    let mut f = Frames::default();
    assert!(f.at_boundary());
    f.advance(&text[..1]);
    assert!(!f.at_boundary());
    assert_eq!(f.to_boundary(), 1, "the length byte is still to come");
    f.advance(&text[1..2]);
    assert_eq!(f.to_boundary(), 5);
    f.advance(&text[2..6]);
    assert_eq!(f.to_boundary(), 1);
    f.advance(&text[6..]);
    assert!(f.at_boundary());
    assert!(!f.close_seen());
}

#[test]
fn extended_lengths_and_masking_keys_are_skipped_not_read_as_payload() {
    let masked16 = frame(0x82, 300, 16, Some([1, 2, 3, 4]), 7);
    assert_eq!(masked16.len(), 2 + 2 + 4 + 300);
    let mut f = Frames::after(&masked16[..3]);
    assert_eq!(f.to_boundary(), 5, "one length byte and the key");
    f.advance(&masked16[3..8]);
    assert_eq!(f.to_boundary(), 300);
    f.advance(&masked16[8..]);
    assert!(f.at_boundary());

    let big = frame(0x02, 70_000, 64, None, 3);
    let f = Frames::after(&big[..10]);
    assert_eq!(f.to_boundary(), 70_000);
    assert!(Frames::after(&big).at_boundary());
}

#[test]
fn empty_frames_are_boundaries_at_once_and_close_frames_are_noticed() {
    let ping = frame(0x89, 0, 7, Some([9, 9, 9, 9]), 0);
    let mut f = Frames::after(&ping);
    assert!(f.at_boundary());
    let close = close_frame(GOING_AWAY, "bye", None);
    f.advance(&close[..1]);
    assert!(f.close_seen(), "noticed from the first byte");
    f.advance(&close[1..]);
    assert!(f.at_boundary() && f.close_seen());
    f.forget_close();
    f.advance(&frame(0x81, 1, 7, None, 1));
    assert!(!f.close_seen());
}

#[test]
fn close_frames_carry_1001_masked_only_towards_servers() {
    let to_client = close_frame(GOING_AWAY, "shutting down", None);
    assert_eq!(&to_client[..4], &[0x88, 15, 0x03, 0xe9]);
    assert_eq!(&to_client[4..], b"shutting down");
    let key = [0xa1, 0xb2, 0xc3, 0xd4];
    let to_server = close_frame(GOING_AWAY, "shutting down", Some(key));
    assert_eq!(&to_server[..6], &[0x88, 0x80 | 15, 0xa1, 0xb2, 0xc3, 0xd4]);
    let unmasked: Vec<u8> = to_server[6..]
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    assert_eq!(unmasked, to_client[2..]);
    let long = close_frame(GOING_AWAY, &"x".repeat(200), Some(key));
    assert_eq!(long.len(), MAX_CLOSE_FRAME);
    for f in [to_client, to_server, long] {
        assert_eq!(boundaries(&f), vec![0, f.len()]);
        assert!(Frames::after(&f).at_boundary());
    }
}

fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let length = prop_oneof![
        6 => (0..=125usize, Just(7u8)),
        3 => (0..=400usize, Just(16u8)),
        1 => (0..=70_000usize, Just(64u8)),
    ];
    let mask = prop::option::of(any::<[u8; 4]>());
    (any::<u8>(), length, mask, any::<u8>())
        .prop_map(|(first, (len, enc), mask, fill)| frame(first, len, enc, mask, fill))
}

fn frames_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    prop::collection::vec(any_frame(), 0..12)
        .prop_map(|frames| frames.concat())
        .prop_flat_map(|bytes| {
            let len = bytes.len();
            let cuts = prop::collection::vec(0..=len, 0..24);
            (Just(bytes), cuts)
        })
}

/// Feeds `bytes` cut at `cuts`; calls `at` with each cut offset and the state there.
fn feed_cut(bytes: &[u8], mut cuts: Vec<usize>, mut at: impl FnMut(usize, &Frames)) -> Frames {
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let (mut f, mut from) = (Frames::default(), 0);
    for cut in cuts {
        f.advance(&bytes[from..cut]);
        from = cut;
        at(cut, &f);
    }
    f
}

proptest! {
    #[test]
    fn frames_cut_anywhere_have_the_boundaries_of_the_whole((bytes, cuts) in frames_and_cuts()) {
        let whole = boundaries(&bytes);
        prop_assert_eq!(*whole.last().unwrap(), bytes.len(), "the generator makes whole frames");
        let end = feed_cut(&bytes, cuts, |offset, f| {
            assert_eq!(f.at_boundary(), whole.contains(&offset), "at offset {}", offset);
        });
        prop_assert_eq!(end, Frames::after(&bytes));
    }

    #[test]
    fn reading_up_to_the_boundary_stops_on_every_boundary(
        (bytes, _) in frames_and_cuts(),
        most in 1..20_000u64,
    ) {
        let (mut f, mut at, mut stops) = (Frames::default(), 0usize, Vec::new());
        while at < bytes.len() {
            let mut n = f.to_boundary();
            if n == 0 {
                stops.push(at);
                n = 1; // the first byte of the next header
            }
            let n = n.min(most).min((bytes.len() - at) as u64) as usize;
            f.advance(&bytes[at..at + n]);
            at += n;
        }
        stops.push(at);
        prop_assert_eq!(stops, boundaries(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_the_state_stays_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(0..4096usize, 0..16),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        let whole = boundaries(&bytes);
        let end = feed_cut(&bytes, cuts, |offset, f| {
            assert!(f.seen <= 14 && f.need <= 14, "{f:?}");
            assert!(f.seen == 0 || f.to_boundary() <= 14, "{f:?}");
            assert_eq!(f.at_boundary(), whole.contains(&offset), "offset {}", offset);
        });
        prop_assert_eq!(end, Frames::after(&bytes));
        prop_assert_eq!(std::mem::size_of::<Frames>(), 16);
    }
}
