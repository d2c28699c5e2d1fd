//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a load balancer sends
//! before the client's bytes to say who the client is, and the v2 header the proxy sends to
//! backends (`backends.send_proxy_protocol: v2`).
//!
//! [`parse`] is pure and incremental: give it every byte received so far and it says
//! "incomplete" (read more), the header and its length, or why the bytes cannot be one — as
//! early as the bytes allow. It is bounded (a v1 header is at most 107 bytes; a v2 header at
//! most 16 + [`MAX_V2_PAYLOAD`] bytes, so its addresses and TLVs are capped at 4 KiB, well above
//! what cloud load balancers send, instead of the 64 KiB the format allows) and does not panic
//! on any input (`proxy/tests/fuzz.rs`). TLVs are checked for framing and otherwise ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::ProxyProtocol;

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included.
pub const MAX_V1: usize = 107;
/// Longest v2 payload (addresses and TLVs after the 16-byte preamble) accepted.
pub const MAX_V2_PAYLOAD: usize = 4096;
/// Longest header of either version.
pub const MAX_HEADER: usize = 16 + MAX_V2_PAYLOAD;

/// A complete PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header took; the client's own bytes start after them.
    pub len: usize,
    /// (source, destination) of the proxied connection; `None` for v1 `UNKNOWN`, v2 `LOCAL`
    /// (the balancer's own health check) and families without IP addresses: the TCP peer is
    /// then the client.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Why the bytes are not an acceptable PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither signature (or the other version than the one configured).
    #[error("no PROXY header where one is required")]
    Missing,
    /// A v1 header that breaks the format.
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    /// A v2 header that breaks the format.
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Parses the start of a connection as a PROXY header of a version `accept` allows.
/// `Ok(None)`: the bytes so far are a valid beginning; read more.
pub fn parse(buf: &[u8], accept: ProxyProtocol) -> Result<Option<Header>, Error> {
    let (v1, v2) = match accept {
        ProxyProtocol::Off => return Err(Error::Missing),
        ProxyProtocol::V1 => (true, false),
        ProxyProtocol::V2 => (false, true),
        ProxyProtocol::Any => (true, true),
    };
    let prefix_of = |sig: &[u8]| {
        buf.len().min(sig.len()) > 0 && sig.starts_with(&buf[..buf.len().min(sig.len())])
    };
    if v2 && prefix_of(&V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if v1 && prefix_of(b"PROXY ") {
        return parse_v1(buf);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    Err(Error::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Error> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_V1 {
            Err(Error::V1("longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::V1("line not ended by CRLF"));
    }
    let line = std::str::from_utf8(&window[..lf - 1]).map_err(|_| Error::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    let (Some("PROXY"), Some(family)) = (fields.next(), fields.next()) else {
        return Err(Error::V1("no protocol family"));
    };
    let len = lf + 1;
    if family == "UNKNOWN" {
        return Ok(Some(Header {
            len,
            addresses: None,
        }));
    }
    let v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(Error::V1("family is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = || fields.next().ok_or(Error::V1("missing address or port"));
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(Error::V1("extra fields"));
    }
    let ip = |s: &str| -> Result<IpAddr, Error> {
        let ip = if v4 {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        } else {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        };
        ip.map_err(|_| Error::V1("bad address for the family"))
    };
    let port = |s: &str| -> Result<u16, Error> {
        let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = s.len() > 1 && s.starts_with('0');
        match digits && !leading_zero {
            true => s.parse().map_err(|_| Error::V1("port out of range")),
            false => Err(Error::V1("bad port")),
        }
    };
    let addresses = (
        SocketAddr::new(ip(src)?, port(sport)?),
        SocketAddr::new(ip(dst)?, port(dport)?),
    );
    Ok(Some(Header {
        len,
        addresses: Some(addresses),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Error> {
    let Some(preamble) = buf.get(..16) else {
        // Check what is there of byte 13 early, so garbage after the signature fails fast.
        if buf.len() > 12 && buf[12] >> 4 != 2 {
            return Err(Error::V2("version is not 2"));
        }
        return Ok(None);
    };
    let (ver_cmd, family) = (preamble[12], preamble[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2("version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::V2("command is not LOCAL or PROXY")),
    };
    let payload = usize::from(u16::from_be_bytes([preamble[14], preamble[15]]));
    if payload > MAX_V2_PAYLOAD {
        return Err(Error::V2("longer than the 4 KiB accepted"));
    }
    let Some(body) = buf.get(16..16 + payload) else {
        return Ok(None);
    };
    let len = 16 + payload;
    if local {
        // The balancer's own connection: the spec says to ignore the rest of the block.
        return Ok(Some(Header {
            len,
            addresses: None,
        }));
    }
    let (addresses, used) = match (family >> 4, family & 0x0f) {
        (_, 2) => return Err(Error::V2("datagram transport")),
        (_, t) if t > 2 => return Err(Error::V2("unknown transport")),
        (0, _) => {
            return Ok(Some(Header {
                len,
                addresses: None,
            }));
        }
        (1, _) => inet::<4>(body)?,
        (2, _) => inet::<16>(body)?,
        (3, _) if body.len() >= 216 => (None, 216),
        (3, _) => return Err(Error::V2("address block shorter than its family")),
        _ => return Err(Error::V2("unknown address family")),
    };
    tlvs(&body[used..])?;
    Ok(Some(Header { len, addresses }))
}

type Addresses = (Option<(SocketAddr, SocketAddr)>, usize);

/// Source and destination of an IPv4 (`N` = 4) or IPv6 (`N` = 16) address block.
fn inet<const N: usize>(body: &[u8]) -> Result<Addresses, Error> {
    let used = 2 * N + 4;
    let block = body
        .get(..used)
        .ok_or(Error::V2("address block shorter than its family"))?;
    let ip = |b: &[u8]| -> IpAddr {
        let mut raw = [0u8; 16];
        raw[..N].copy_from_slice(b);
        match N {
            4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            _ => IpAddr::V6(Ipv6Addr::from(raw)),
        }
    };
    let port = |i: usize| u16::from_be_bytes([block[i], block[i + 1]]);
    let src = SocketAddr::new(ip(&block[..N]), port(2 * N));
    let dst = SocketAddr::new(ip(&block[N..2 * N]), port(2 * N + 2));
    Ok((Some((src, dst)), used))
}

/// Checks that the TLVs after the addresses tile the rest of the header exactly.
fn tlvs(mut rest: &[u8]) -> Result<(), Error> {
    while !rest.is_empty() {
        let [_, hi, lo, ..] = *rest else {
            return Err(Error::V2("truncated TLV"));
        };
        let len = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest
            .get(len..)
            .ok_or(Error::V2("TLV longer than the header"))?;
    }
    Ok(())
}

/// Appends a v2 `PROXY` header for a TCP connection from `src` to `dst` (both written as IPv6
/// if their families differ).
pub fn write_v2(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src.ip().to_canonical(), dst.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&six(s).octets());
            out.extend_from_slice(&six(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

/// Length of [`write_v2`]'s header at most.
pub const V2_WRITTEN_MAX: usize = 16 + 36;

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_give_their_addresses_and_length() {
        let raw = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let h = parse(raw, ProxyProtocol::Any).unwrap().unwrap();
        assert_eq!(h.len, raw.len() - 5);
        assert_eq!(
            h.addresses,
            Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        let h = parse(six, ProxyProtocol::V1).unwrap().unwrap();
        assert_eq!(h.addresses.unwrap().0, sa("[2001:db8::1]:1"));
        let unknown = b"PROXY UNKNOWN ffff::1 whatever\r\n";
        assert_eq!(
            parse(unknown, ProxyProtocol::V1)
                .unwrap()
                .unwrap()
                .addresses,
            None
        );
    }

    #[test]
    fn every_prefix_of_a_valid_header_asks_for_more() {
        let mut v2 = Vec::new();
        write_v2(sa("10.0.0.1:1000"), sa("10.0.0.2:80"), &mut v2);
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec();
        for whole in [v1, v2] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut], ProxyProtocol::Any), Ok(None), "{cut}");
            }
            assert_eq!(
                parse(&whole, ProxyProtocol::Any).unwrap().unwrap().len,
                whole.len()
            );
        }
    }

    #[test]
    fn v2_round_trips_and_local_means_the_tcp_peer() {
        for (src, dst) in [
            ("10.0.0.1:1000", "10.0.0.2:80"),
            ("[2001:db8::1]:5", "[2001:db8::2]:6"),
            ("10.0.0.1:7", "[2001:db8::2]:8"),
        ] {
            let mut out = Vec::new();
            write_v2(sa(src), sa(dst), &mut out);
            assert!(out.len() <= V2_WRITTEN_MAX);
            let h = parse(&out, ProxyProtocol::V2).unwrap().unwrap();
            let (s, d) = h.addresses.unwrap();
            assert_eq!(
                (s.ip().to_canonical(), s.port()),
                (sa(src).ip(), sa(src).port())
            );
            assert_eq!(d.port(), sa(dst).port());
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local, ProxyProtocol::Any)
                .unwrap()
                .unwrap()
                .addresses,
            None
        );
        // With a TLV (AWS's VPC endpoint id, type 0xEA).
        let mut tlv = Vec::new();
        write_v2(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &mut tlv);
        tlv[15] += 6;
        tlv.extend_from_slice(&[0xEA, 0, 3, b'v', b'p', b'c']);
        assert_eq!(
            parse(&tlv, ProxyProtocol::V2).unwrap().unwrap().len,
            tlv.len()
        );
    }

    #[test]
    fn malformed_or_unexpected_headers_are_refused() {
        let bad: [(&[u8], ProxyProtocol); 12] = [
            (b"GET / HTTP/1.1\r\n", ProxyProtocol::Any),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyProtocol::V2),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyProtocol::V1),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", ProxyProtocol::V1),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ProxyProtocol::V1),
            (b"\r\n\r\n\0\r\nQUIT\n\x31", ProxyProtocol::V2),
            (b"\r\n\r\n\0\r\nQUIT\n\x22\x11\0\x0c", ProxyProtocol::V2),
        ];
        for (raw, accept) in bad {
            assert!(
                parse(raw, accept).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(
            parse(&long, ProxyProtocol::V1),
            Err(Error::V1("longer than 107 bytes"))
        );
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(
            parse(&huge, ProxyProtocol::V2).is_err(),
            "64 KiB payloads are over the cap"
        );
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(
            parse(&short, ProxyProtocol::V2).is_err(),
            "INET needs 12 bytes"
        );
        let mut ragged = Vec::new();
        write_v2(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &mut ragged);
        ragged[15] += 2;
        ragged.extend_from_slice(&[0xEA, 0]);
        assert!(parse(&ragged, ProxyProtocol::V2).is_err(), "truncated TLV");
    }
}
