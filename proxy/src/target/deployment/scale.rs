//! Writing the scale: patch `spec.replicas` through the Deployment's `scale` subresource, retrying
//! conflicts, throttling, server and transport errors with exponential backoff and jitter.
//!
//! Level-triggered: a write that is waiting to retry gives up as soon as something newer is
//! known (a new decision, lost leadership) — the caller then plans again from the newest state,
//! so an old value is never written after a newer one was asked for.

use std::future::Future;
use std::time::Duration;

use ::kube::Api;
use ::kube::api::{Patch, PatchParams};
use k8s_openapi::api::apps::v1::Deployment;
use tracing::warn;

use prometheus::IntCounterVec;

use crate::kube::Error;

/// First retry delay.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Exponential backoff with "equal jitter": attempt `n` waits between half and all of
/// `min(base * 2^n, max)`, so that several writers that failed together do not retry together.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; `jitter` in `[0, 1)` picks where in the upper half it falls.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let full = exp.min(self.max);
        full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX)
    }
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The API server accepted it; `spec.replicas` is now this.
    Written(i32),
    /// Something newer came while waiting to retry; nothing more was written.
    Superseded,
}

/// Patches one Deployment's scale.
pub struct Writer {
    api: Api<Deployment>,
    name: String,
    backoff: Backoff,
    errors: IntCounterVec,
    timeout: Duration,
}

impl Writer {
    /// A writer for the Deployment `name` of `api`'s namespace; failed attempts are counted
    /// in `errors{kind}`.
    pub fn new(api: Api<Deployment>, name: &str, errors: IntCounterVec) -> Self {
        Self {
            api,
            name: name.to_owned(),
            backoff: Backoff::default(),
            errors,
            timeout: crate::kube::DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Gives each PATCH at most `timeout` (shorter than the Lease's renew deadline).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses `backoff` instead of the default.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// One PATCH of `{"spec":{"replicas":n}}`, no retry, within the call timeout.
    pub async fn patch_once(&self, replicas: i32) -> Result<i32, Error> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        let pp = PatchParams::default();
        let patch = Patch::Merge(&patch);
        let call = self.api.patch_scale(&self.name, &pp, &patch);
        let scale = crate::kube::within(self.timeout, "patch deployments/scale", call).await?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(replicas))
    }

    /// Writes `replicas`, retrying retryable errors until it is accepted or `newer` completes
    /// (checked while waiting between attempts). Errors that a retry cannot fix (403, 404,
    /// 422, …) are returned at once. Every error is counted.
    pub async fn write(
        &mut self,
        replicas: i32,
        newer: impl Future<Output = ()>,
    ) -> Result<Outcome, Error> {
        let mut newer = std::pin::pin!(newer);
        loop {
            match self.patch_once(replicas).await {
                Ok(n) => {
                    self.backoff.reset();
                    return Ok(Outcome::Written(n));
                }
                Err(e) => {
                    self.count(&e);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    let delay = self.backoff.next_delay(fastrand::f64());
                    warn!(error = %e, retry_in = ?delay, replicas, "scale write failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut newer => return Ok(Outcome::Superseded),
                    }
                }
            }
        }
    }

    fn count(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }
}

#[cfg(test)]
mod tests;
