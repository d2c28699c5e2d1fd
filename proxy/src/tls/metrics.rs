//! What TLS termination counts: handshakes by version, handshakes that failed by reason,
//! certificate reloads by result, and when each certificate in force expires.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use crate::metrics::{self, Error, counter_vec, gauge_vec};

/// The TLS metrics, registered by the component that terminates TLS.
#[derive(Clone)]
pub struct Metrics {
    /// `tidegate_tls_handshakes_total{version}`: completed handshakes (`tls1_2`, `tls1_3`).
    pub handshakes: IntCounterVec,
    /// `tidegate_tls_handshake_errors_total{reason}`: connections closed before or during the
    /// handshake (see [`super::accept::Refusal`]); none of them reaches a backend.
    pub handshake_errors: IntCounterVec,
    /// `tidegate_tls_reloads_total{result}`: certificate pairs reloaded after their files
    /// changed (`ok`), or refused and kept as they were (`error`).
    pub reloads: IntCounterVec,
    /// `tidegate_tls_certificate_expiry_timestamp_seconds{name}`: the `notAfter` of each
    /// certificate in force, in Unix seconds.
    pub expiry: IntGaugeVec,
}

impl Metrics {
    /// Creates the TLS metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, Error> {
        Ok(Self {
            handshakes: counter_vec(
                registry,
                "tidegate_tls_handshakes_total",
                "TLS handshakes completed, by protocol version.",
                &["version"],
            )?,
            handshake_errors: counter_vec(
                registry,
                "tidegate_tls_handshake_errors_total",
                "Connections closed before or during the TLS handshake, by reason.",
                &["reason"],
            )?,
            reloads: counter_vec(
                registry,
                "tidegate_tls_reloads_total",
                "Certificate pairs reloaded after a change of their files, by result (ok, error).",
                &["result"],
            )?,
            expiry: gauge_vec(
                registry,
                "tidegate_tls_certificate_expiry_timestamp_seconds",
                "When each certificate in force expires (its notAfter), in Unix seconds.",
                &["name"],
            )?,
        })
    }

    /// Records the expiry of the certificate `name` (nothing if it could not be read).
    pub fn set_expiry(&self, name: &str, not_after: Option<std::time::SystemTime>) {
        let Some(at) = not_after else { return };
        let secs = at
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.expiry.with_label_values(&[name]).set(secs);
    }

    /// Failed handshakes since start, all reasons.
    pub fn handshake_errors_total(&self) -> u64 {
        metrics::counter_total(&self.handshake_errors)
    }
}
