//! Registering metrics: every component creates its own `*Metrics` and registers it into the one
//! [`Registry`] the admin listener serves. A metric that cannot be registered (a clash of names,
//! a bad label) is a programming error, but it fails start-up with a message that names it
//! rather than panicking or being swallowed.
//!
//! Names follow `tidegate_<noun>_<unit>[_total]`; labels are bounded (backend addresses, which
//! the Deployment bounds, and fixed words — never paths, hosts or error strings).

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A metric could not be created or registered.
#[derive(Debug, thiserror::Error)]
#[error("metric {name}: {source}")]
pub struct Error {
    name: String,
    #[source]
    source: prometheus::Error,
}

impl Error {
    /// `name` could not be made or registered because of `source`.
    pub fn new(name: &str, source: prometheus::Error) -> Self {
        Self {
            name: name.to_owned(),
            source,
        }
    }
}

/// Registers `collector` (named `name` in errors) and hands it back.
pub fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    collector: C,
) -> Result<C, Error> {
    registry
        .register(Box::new(collector.clone()))
        .map_err(|e| Error::new(name, e))?;
    Ok(collector)
}

/// A counter with `labels`, registered.
pub fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| Error::new(name, e))?;
    register(registry, name, c)
}

/// A gauge, registered.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, Error> {
    let g = IntGauge::new(name, help).map_err(|e| Error::new(name, e))?;
    register(registry, name, g)
}

/// A gauge with `labels`, registered.
pub fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).map_err(|e| Error::new(name, e))?;
    register(registry, name, g)
}

/// A histogram of seconds with `labels` and `buckets`, registered.
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> Result<HistogramVec, Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    let h = HistogramVec::new(opts, labels).map_err(|e| Error::new(name, e))?;
    register(registry, name, h)
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The sum of every series of a counter family (e.g. all refusals, whatever the reason).
pub fn counter_total(counter: &IntCounterVec) -> u64 {
    counter
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clash_of_names_is_an_error_that_names_the_metric() {
        let registry = Registry::new();
        gauge(&registry, "tidegate_test_things", "Things.").unwrap();
        let err = gauge(&registry, "tidegate_test_things", "Things again.").unwrap_err();
        assert!(err.to_string().contains("tidegate_test_things"), "{err}");
    }

    #[test]
    fn counter_total_sums_every_label() {
        let registry = Registry::new();
        let c = counter_vec(&registry, "tidegate_test_total", "T.", &["reason"]).unwrap();
        c.with_label_values(&["a"]).inc_by(2);
        c.with_label_values(&["b"]).inc();
        assert_eq!(counter_total(&c), 3);
        assert!(render(&registry).contains("tidegate_test_total{reason=\"a\"} 2"));
    }
}
