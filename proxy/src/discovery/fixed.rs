//! The fixed source: `backends.static` from the config, each ready, with its own cap where the
//! config gives one. Published once at start and again on every reload.

use super::Endpoint;
use crate::config::Config;

/// The static backends of `config` as endpoints.
pub fn endpoints(config: &Config) -> Vec<Endpoint> {
    config
        .backends
        .static_
        .iter()
        .map(|b| Endpoint {
            capacity: b.max_connections,
            ..Endpoint::ready(b.address)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_backends_are_ready_with_their_own_caps() {
        let c = crate::config::parse(
            "backends:\n  static:\n    - 127.0.0.1:9001\n    - {address: 127.0.0.1:9002, max_connections: 5}\n",
            "t.yaml",
        )
        .unwrap();
        let eps = endpoints(&c);
        assert_eq!(eps.len(), 2);
        assert_eq!((eps[0].capacity, eps[1].capacity), (None, Some(5)));
        assert!(
            eps.iter()
                .all(|e| e.condition == super::super::Condition::Ready)
        );
    }
}
