//! The traffic listener's dealings with its peers: `proxy_protocol` (what a load balancer in
//! front sends first), `trusted_proxies` (whose forwarding headers are believed), and
//! `tcp_keepalive` (how a silent peer is found dead), plus `backends.send_proxy_protocol`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Default idle time before the first keepalive probe.
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Default time between keepalive probes.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Default unanswered probes before the connection is dropped.
pub const DEFAULT_KEEPALIVE_COUNT: u32 = 6;

/// `proxy_protocol`: whether connections to the traffic listener start with a PROXY header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header; the TCP peer is the client (default).
    #[default]
    Off,
    /// A v1 (text) header is required.
    V1,
    /// A v2 (binary) header is required.
    V2,
    /// Either version is required.
    Any,
}

/// `backends.send_proxy_protocol`: whether the proxy sends a PROXY header to backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendProxyProtocol {
    /// Nothing is sent before the request (default).
    #[default]
    Off,
    /// A v2 header with the client's address opens every backend connection.
    V2,
}

/// `tcp_keepalive`: TCP keepalive on both legs of every proxied connection, so a peer that
/// vanished without a FIN frees its slot after `idle + interval × count` (default 2 min).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpKeepalive {
    /// Idle time before the first probe. Default `60s`.
    #[serde(with = "tidegate_common::duration")]
    pub idle: Duration,
    /// Time between probes. Default `10s`.
    #[serde(with = "tidegate_common::duration")]
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped. Default 6.
    pub count: u32,
}

impl Default for TcpKeepalive {
    fn default() -> Self {
        Self {
            idle: DEFAULT_KEEPALIVE_IDLE,
            interval: DEFAULT_KEEPALIVE_INTERVAL,
            count: DEFAULT_KEEPALIVE_COUNT,
        }
    }
}

/// `tcp_keepalive: off`, or the settings (any omitted field has its default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive(pub Option<TcpKeepalive>);

impl Default for Keepalive {
    fn default() -> Self {
        Self(Some(TcpKeepalive::default()))
    }
}

impl Serialize for Keepalive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => s.serialize_str("off"),
            Some(k) => k.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Keepalive {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(KeepaliveVisitor)
    }
}

struct KeepaliveVisitor;

impl<'de> Visitor<'de> for KeepaliveVisitor {
    type Value = Keepalive;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("off, or {idle: 60s, interval: 10s, count: 6}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Keepalive, E> {
        match v {
            "off" => Ok(Keepalive(None)),
            other => Err(E::custom(format!(
                "invalid tcp_keepalive {other:?}: expected off or {{idle, interval, count}}"
            ))),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Keepalive, E> {
        // YAML 1.1 readers take a bare `off` for false.
        match v {
            false => Ok(Keepalive(None)),
            true => Ok(Keepalive::default()),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Keepalive, A::Error> {
        let settings = TcpKeepalive::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Keepalive(Some(settings)))
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
    /// dual-stack listener reports for an IPv4 peer) match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_match(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(net.to_bits(), ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_match(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let host_bits = width - u32::from(prefix);
    host_bits >= width || (a ^ b) >> host_bits == 0
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || format!("invalid CIDR {s:?}: expected e.g. 10.0.0.0/8 or 2001:db8::/32");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| invalid())?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > width {
            return Err(invalid());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_and_nothing_else() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        let one: Cidr = "192.0.2.9".parse().unwrap();
        assert!(one.contains(ip("192.0.2.9")) && !one.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let any6: Cidr = "::/0".parse().unwrap();
        assert!(any6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn malformed_blocks_are_refused_with_the_text() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "::/129",
            "x/8",
            "10.0.0.0/+8",
            "1.2.3.4/0008",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }
}
