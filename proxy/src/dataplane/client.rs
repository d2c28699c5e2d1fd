//! Who is on the other end of a client connection, and what backends are told about it.
//!
//! A [`Client`] is settled once per connection, before its first request is routed: the TCP
//! peer, or — behind a load balancer speaking the PROXY protocol — the source address in the
//! PROXY header. It is the address in logs, in `X-Forwarded-For`, and the one `trusted_proxies`
//! is checked against. Both paths build their forwarding headers from [`Forwarding`]: the fast
//! path writes them into its rewritten head, pingora's path sets them on its request header.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

/// The scheme the client spoke to the proxy (`X-Forwarded-Proto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// Plain HTTP (the traffic listener today).
    #[default]
    Http,
    /// TLS terminated by the proxy.
    Https,
}

impl Proto {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// One client connection's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client: the TCP peer, or the PROXY header's source.
    pub addr: SocketAddr,
    /// Where it connected to, as the PROXY header named it; `None` without one (the socket's
    /// own address is then looked up only if something needs it: a PROXY header to send).
    pub local: Option<SocketAddr>,
    /// The scheme it spoke.
    pub proto: Proto,
}

/// What a request's forwarding headers become, for one client under one config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarding {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client: IpAddr,
    /// The scheme for `X-Forwarded-Proto`.
    pub proto: Proto,
    /// Whether the client is a trusted proxy: its `X-Forwarded-For` chain is extended and its
    /// `X-Forwarded-Proto`, `X-Real-IP` and `Forwarded` kept; otherwise they are dropped.
    pub trusted: bool,
}

impl Forwarding {
    /// The forwarding rules for `client` under `config`; `None` when `forwarded_headers` is off
    /// (the headers pass through untouched).
    pub fn new(config: &Config, client: &Client) -> Option<Self> {
        if !config.forwarded_headers {
            return None;
        }
        let ip = client.addr.ip().to_canonical();
        Some(Self {
            client: ip,
            proto: client.proto,
            trusted: config.trusted_proxies.iter().any(|c| c.contains(ip)),
        })
    }

    /// What to do with a client-sent header named `name`.
    pub fn treat(&self, name: &[u8]) -> Incoming {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("x-forwarded-for") {
            Incoming::Chain
        } else if is("x-forwarded-proto") {
            if self.trusted {
                Incoming::KeepProto
            } else {
                Incoming::Drop
            }
        } else if is("x-real-ip") || is("forwarded") {
            if self.trusted {
                Incoming::Keep
            } else {
                Incoming::Drop
            }
        } else {
            Incoming::Keep
        }
    }

    /// Writes the `X-Forwarded-For` value: the trusted chain (`chain`, the values of the
    /// client's own `X-Forwarded-For` headers in order; ignored unless trusted), then the
    /// client. Formatting the address allocates nothing.
    pub fn write_chain<'a>(&self, chain: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
        if self.trusted {
            for value in chain.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", self.client);
    }
}

/// How a client-sent forwarding header is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Not a forwarding header, or a trusted one: passed on.
    Keep,
    /// A trusted `X-Forwarded-Proto`: passed on, and none is added.
    KeepProto,
    /// `X-Forwarded-For`: folded into the one the proxy writes.
    Chain,
    /// Sent by an untrusted client: removed.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding(trusted: &[&str], client: &str) -> Forwarding {
        let config = Config {
            trusted_proxies: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            ..Config::default()
        };
        let addr: SocketAddr = client.parse().unwrap();
        let c = Client {
            addr,
            local: None,
            proto: Proto::Http,
        };
        Forwarding::new(&config, &c).unwrap()
    }

    fn chain(f: &Forwarding, values: &[&str]) -> String {
        let mut out = Vec::new();
        f.write_chain(values.iter().map(|v| v.as_bytes()), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_untrusted_client_is_the_whole_chain() {
        let f = forwarding(&["10.0.0.0/8"], "203.0.113.7:5000");
        assert!(!f.trusted);
        assert_eq!(chain(&f, &["6.6.6.6"]), "203.0.113.7");
        assert_eq!(f.treat(b"X-Real-IP"), Incoming::Drop);
        assert_eq!(f.treat(b"forwarded"), Incoming::Drop);
        assert_eq!(f.treat(b"X-Forwarded-Proto"), Incoming::Drop);
        assert_eq!(f.treat(b"X-Forwarded-For"), Incoming::Chain);
        assert_eq!(f.treat(b"Cookie"), Incoming::Keep);
    }

    #[test]
    fn a_trusted_proxy_has_the_client_appended_to_its_chain() {
        let f = forwarding(&["10.0.0.0/8"], "[::ffff:10.1.2.3]:5000");
        assert!(f.trusted);
        assert_eq!(
            chain(&f, &["198.51.100.1, 10.9.9.9", " ", "10.8.8.8 "]),
            "198.51.100.1, 10.9.9.9, 10.8.8.8, 10.1.2.3"
        );
        assert_eq!(f.treat(b"x-real-ip"), Incoming::Keep);
        assert_eq!(f.treat(b"x-forwarded-proto"), Incoming::KeepProto);
        let v6 = forwarding(&[], "[2001:db8::1]:443");
        assert_eq!(chain(&v6, &[]), "2001:db8::1");
    }

    #[test]
    fn off_means_untouched() {
        let config = Config {
            forwarded_headers: false,
            ..Config::default()
        };
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = Client {
            addr,
            local: None,
            proto: Proto::Http,
        };
        assert_eq!(Forwarding::new(&config, &c), None);
    }
}
