//! Baseline policies tidegate is judged against, each faithful to its source: Kubernetes HPA v2
//! ([`hpa`]), Knative's KPA ([`kpa`]), the seed's quadratic predictor ([`seed2`]) and the two
//! oracles ([`oracle`]).

pub mod hpa;
pub mod kpa;
pub mod oracle;
pub mod seed2;
