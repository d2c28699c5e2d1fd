//! The exchange's wire format: a [`Report`] as compact binary, and its hostile-input-proof
//! decoder.
//!
//! Layout (integers are LEB128 varints unless a width is given; ids little-endian):
//!
//! ```text
//! "TGP2"  from:u64  seq  admin_port:u16  flags:u8  queued  refused_total
//!         arrivals  refused     (the sender's smoothed rates: per second, within ~2 s)
//! view:     count, then per member:  member:u64  seen  up:u8
//! backends: count, then per backend: family:u8(4|6)  ip:4|16 bytes  port:u16  capacity
//!                                    state:u8  epoch:u32  live  pending  share
//! grants:   count, then per grant:   to:u64  backend  to_epoch:u32  given  acked
//! acks:     count, then per ack:     from:u64  backend  from_epoch:u32  received
//! ```
//!
//! The magic names the layout: `TGP2` carries two rates (`arrivals  refused`) where `TGP1`
//! carried one (`arrivals`), so a report of the other layout is refused with [`Error::Magic`]
//! (counted as `bad_magic`) rather than misread. Replicas of the two layouts do not see each
//! other: do not run them side by side.
//!
//! A backend costs 17 bytes for IPv4 with small counts; 500 backends make a 9 KB report. The
//! decoder never allocates more than the input can fill (every count is checked against the
//! bytes left), refuses anything above [`MAX_REPORT_BYTES`], trailing bytes, unknown flags and
//! states, and values out of range — with an [`Error`] that says which.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::table::backend::BackendState;

use super::report::{AckEntry, BackendEntry, GrantEntry, Rates, Report, ViewEntry};

/// Largest report accepted: 64 k backends at their largest fit.
pub const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;
/// Most members a report may list.
pub const MAX_MEMBERS: usize = 1024;

const MAGIC: &[u8; 4] = b"TGP2";
const FLAG_LEAVING: u8 = 1;
const FLAG_LEADER: u8 = 2;
const FLAG_SOURCE: u8 = 4;

/// Why bytes are not a report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Above [`MAX_REPORT_BYTES`].
    #[error("report of {0} bytes is larger than the limit of {MAX_REPORT_BYTES}")]
    TooLarge(usize),
    /// Not a tidegate peer report (or another version of it).
    #[error("not a tidegate peer report (bad magic)")]
    Magic,
    /// The bytes end inside a field.
    #[error("report truncated in {0}")]
    Truncated(&'static str),
    /// A field holds a value it cannot hold.
    #[error("invalid {0} in report")]
    Invalid(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} bytes after the end of the report")]
    Trailing(usize),
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::Magic => "bad_magic",
            Self::Truncated(_) => "truncated",
            Self::Invalid(_) | Self::Trailing(_) => "invalid",
        }
    }
}

/// Encodes `report`.
pub fn encode(report: &Report) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + report.backends.len() * 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&report.from.to_le_bytes());
    varint(&mut out, report.seq);
    out.extend_from_slice(&report.admin_port.to_le_bytes());
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    let flags = flag(report.leaving, FLAG_LEAVING)
        | flag(report.leader, FLAG_LEADER)
        | flag(report.has_source, FLAG_SOURCE);
    out.push(flags);
    varint(&mut out, report.queued.into());
    varint(&mut out, report.refused_total);
    varint(&mut out, report.rates.arrivals.into());
    varint(&mut out, report.rates.refused.into());
    varint(&mut out, report.view.len() as u64);
    for v in &report.view {
        out.extend_from_slice(&v.member.to_le_bytes());
        varint(&mut out, v.seen);
        out.push(u8::from(v.up));
    }
    varint(&mut out, report.backends.len() as u64);
    for b in &report.backends {
        address(&mut out, b.address);
        varint(&mut out, b.capacity.into());
        out.push(state_byte(b.state));
        out.extend_from_slice(&b.epoch.to_le_bytes());
        varint(&mut out, b.live.into());
        varint(&mut out, b.pending.into());
        varint(&mut out, b.share.into());
    }
    varint(&mut out, report.grants.len() as u64);
    for g in &report.grants {
        out.extend_from_slice(&g.to.to_le_bytes());
        varint(&mut out, g.backend.into());
        out.extend_from_slice(&g.to_epoch.to_le_bytes());
        varint(&mut out, g.given);
        varint(&mut out, g.acked);
    }
    varint(&mut out, report.acks.len() as u64);
    for a in &report.acks {
        out.extend_from_slice(&a.from.to_le_bytes());
        varint(&mut out, a.backend.into());
        out.extend_from_slice(&a.from_epoch.to_le_bytes());
        varint(&mut out, a.received);
    }
    out
}

/// Decodes a report, refusing anything malformed, oversized or with trailing bytes.
pub fn decode(bytes: &[u8]) -> Result<Report, Error> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(Error::TooLarge(bytes.len()));
    }
    let mut r = Reader { bytes, at: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(Error::Magic);
    }
    let from = r.u64("from")?;
    let seq = r.varint("seq")?;
    let admin_port = r.u16("admin_port")?;
    let flags = r.u8("flags")?;
    if flags & !(FLAG_LEAVING | FLAG_LEADER | FLAG_SOURCE) != 0 {
        return Err(Error::Invalid("flags"));
    }
    let mut report = Report {
        from,
        seq,
        admin_port,
        leaving: flags & FLAG_LEAVING != 0,
        leader: flags & FLAG_LEADER != 0,
        has_source: flags & FLAG_SOURCE != 0,
        queued: r.u32("queued")?,
        refused_total: r.varint("refused_total")?,
        rates: Rates {
            arrivals: r.u32("arrivals")?,
            refused: r.u32("refused")?,
        },
        ..Report::default()
    };
    let n = r.count("view", 10)?;
    if n > MAX_MEMBERS {
        return Err(Error::Invalid("view length"));
    }
    report.view = (0..n)
        .map(|_| view_entry(&mut r))
        .collect::<Result<_, _>>()?;
    let n = r.count("backends", 14)?;
    report.backends = (0..n).map(|_| backend(&mut r)).collect::<Result<_, _>>()?;
    let n = r.count("grants", 15)?;
    report.grants = (0..n).map(|_| grant(&mut r)).collect::<Result<_, _>>()?;
    let n = r.count("acks", 14)?;
    report.acks = (0..n).map(|_| ack(&mut r)).collect::<Result<_, _>>()?;
    let left = bytes.len() - r.at;
    if left > 0 {
        return Err(Error::Trailing(left));
    }
    let nb = report.backends.len();
    let in_range = |i: u32| usize::try_from(i).is_ok_and(|i| i < nb);
    if !report
        .grants
        .iter()
        .all(|g| in_range(g.backend) && g.acked <= g.given)
    {
        return Err(Error::Invalid("grant"));
    }
    if !report.acks.iter().all(|a| in_range(a.backend)) {
        return Err(Error::Invalid("ack"));
    }
    Ok(report)
}

fn view_entry(r: &mut Reader<'_>) -> Result<ViewEntry, Error> {
    Ok(ViewEntry {
        member: r.u64("view member")?,
        seen: r.varint("view seen")?,
        up: r.bool("view up")?,
    })
}

fn backend(r: &mut Reader<'_>) -> Result<BackendEntry, Error> {
    let ip = match r.u8("address family")? {
        4 => {
            let b: [u8; 4] = r.array("address")?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        6 => {
            let b: [u8; 16] = r.array("address")?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(Error::Invalid("address family")),
    };
    let port = r.u16("port")?;
    Ok(BackendEntry {
        address: SocketAddr::new(ip, port),
        capacity: r.u32("capacity")?,
        state: state_from(r.u8("state")?)?,
        epoch: u32::from_le_bytes(r.array("epoch")?),
        live: r.u32("live")?,
        pending: r.u32("pending")?,
        share: r.u32("share")?,
    })
}

fn grant(r: &mut Reader<'_>) -> Result<GrantEntry, Error> {
    Ok(GrantEntry {
        to: r.u64("grant to")?,
        backend: r.u32("grant backend")?,
        to_epoch: u32::from_le_bytes(r.array("grant epoch")?),
        given: r.varint("grant given")?,
        acked: r.varint("grant acked")?,
    })
}

fn ack(r: &mut Reader<'_>) -> Result<AckEntry, Error> {
    Ok(AckEntry {
        from: r.u64("ack from")?,
        backend: r.u32("ack backend")?,
        from_epoch: u32::from_le_bytes(r.array("ack epoch")?),
        received: r.varint("ack received")?,
    })
}

fn state_byte(s: BackendState) -> u8 {
    match s {
        BackendState::Ready => 0,
        BackendState::Terminating => 1,
        BackendState::Draining => 2,
        BackendState::Removed => 3,
    }
}

fn state_from(b: u8) -> Result<BackendState, Error> {
    Ok(match b {
        0 => BackendState::Ready,
        1 => BackendState::Terminating,
        2 => BackendState::Draining,
        3 => BackendState::Removed,
        _ => return Err(Error::Invalid("backend state")),
    })
}

fn address(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_le_bytes());
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).ok_or(Error::Truncated(what))?;
        let s = self.bytes.get(self.at..end).ok_or(Error::Truncated(what))?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let s = self.take(N, what)?;
        s.try_into().map_err(|_| Error::Truncated(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, Error> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Invalid(what)),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Error::Invalid(what));
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Invalid(what))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        u32::try_from(self.varint(what)?).map_err(|_| Error::Invalid(what))
    }

    /// A count of entries that take at least `min_bytes` each: never more than the bytes left
    /// can hold, so a hostile count cannot make the decoder allocate.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, Error> {
        let n = usize::try_from(self.varint(what)?).map_err(|_| Error::Invalid(what))?;
        let left = self.bytes.len() - self.at;
        if n > left / min_bytes {
            return Err(Error::Truncated(what));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            from: 0xdead_beef_0102_0304,
            seq: 300,
            admin_port: 9090,
            leaving: false,
            leader: true,
            has_source: true,
            queued: 7,
            refused_total: 1 << 40,
            rates: Rates {
                arrivals: 12_345,
                refused: u32::MAX,
            },
            view: vec![ViewEntry {
                member: 5,
                seen: 299,
                up: true,
            }],
            backends: vec![
                BackendEntry {
                    address: "10.0.0.1:9000".parse().unwrap(),
                    capacity: 100,
                    state: BackendState::Draining,
                    epoch: 77,
                    live: 40,
                    pending: 2,
                    share: 50,
                },
                BackendEntry {
                    address: "[::1]:9001".parse().unwrap(),
                    capacity: u32::MAX,
                    state: BackendState::Ready,
                    epoch: u32::MAX,
                    live: 0,
                    pending: 0,
                    share: 0,
                },
            ],
            grants: vec![GrantEntry {
                to: 5,
                backend: 1,
                to_epoch: 9,
                given: 30,
                acked: 20,
            }],
            acks: vec![AckEntry {
                from: 5,
                backend: 0,
                from_epoch: 3,
                received: u64::MAX,
            }],
        }
    }

    #[test]
    fn a_report_round_trips() {
        let r = sample();
        let bytes = encode(&r);
        assert_eq!(decode(&bytes).unwrap(), r);
        assert_eq!(
            decode(&encode(&Report::default())).unwrap(),
            Report::default()
        );
    }

    #[test]
    fn every_truncation_and_every_extra_byte_is_refused() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(Error::Trailing(1)));
    }

    #[test]
    fn hostile_values_are_refused_with_a_reason() {
        let bytes = encode(&sample());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(Error::Magic));
        let mut flags = bytes.clone();
        let at = 4 + 8 + 2 + 2; // magic, from, seq (2 bytes for 300), port
        flags[at] = 0x80;
        assert_eq!(decode(&flags), Err(Error::Invalid("flags")));
        // A count of 2^60 backends with a few bytes behind it must not allocate.
        let mut huge = encode(&Report::default());
        let view_at = huge.len() - 4;
        huge.truncate(view_at + 1);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(decode(&huge), Err(Error::Truncated("backends"))));
        assert!(matches!(
            decode(&vec![0; MAX_REPORT_BYTES + 1]),
            Err(Error::TooLarge(_))
        ));
        let mut r = sample();
        r.grants[0].backend = 9;
        assert_eq!(decode(&encode(&r)), Err(Error::Invalid("grant")));
        let mut r = sample();
        r.grants[0].acked = 31;
        assert_eq!(decode(&encode(&r)), Err(Error::Invalid("grant")));
    }

    proptest::proptest! {
        #[test]
        fn any_rates_round_trip(arrivals: u32, refused: u32, queued: u32) {
            let mut r = sample();
            r.rates = Rates { arrivals, refused };
            r.queued = queued;
            proptest::prop_assert_eq!(decode(&encode(&r)).unwrap(), r);
        }

        #[test]
        fn hostile_bytes_never_panic(
            flips in proptest::collection::vec((0usize..512, proptest::num::u8::ANY), 0..8),
            cut in 0usize..512,
        ) {
            // A valid report with bytes flipped and cut: an error or a report, never a panic.
            let mut bytes = encode(&sample());
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes.truncate(cut.max(4));
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn five_hundred_backends_fit_in_ten_kilobytes() {
        let mut r = sample();
        r.backends = (0..500u16)
            .map(|i| BackendEntry {
                address: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 9000)),
                capacity: 1000,
                state: BackendState::Ready,
                epoch: u32::from(i) * 7919,
                live: 700,
                pending: 3,
                share: 100,
            })
            .collect();
        let n = encode(&r).len();
        assert!(n < 10_240, "{n} bytes");
    }
}
