//! tidegate's policy configuration: every constant of the policy is a field here, with its unit
//! and default documented, parsed from the `scaler.policy` section of the config file.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::Error;

/// Default decision period.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default hard per-pod connection cap (the proxy refuses beyond it).
pub const DEFAULT_CAPACITY: u32 = 1000;
/// Default target occupancy in normal mode (fraction of capacity).
pub const DEFAULT_TARGET_OCCUPANCY: f64 = 0.92;
/// Default target occupancy in surge mode.
pub const DEFAULT_SURGE_OCCUPANCY: f64 = 0.8;
/// Default occupancy of the pods the edge routes to (the rest stand by empty).
pub const DEFAULT_SERVING_OCCUPANCY: f64 = 0.95;
/// Default horizon the serving pods are sized for.
pub const DEFAULT_SERVING_HORIZON: Duration = Duration::from_secs(10);
/// Default window whose peak the serving set is sized for (it shrinks only after this).
pub const DEFAULT_SERVING_WINDOW: Duration = Duration::from_secs(60);
/// Default lower replica bound.
pub const DEFAULT_MIN_REPLICAS: u32 = 2;
/// Default upper replica bound.
pub const DEFAULT_MAX_REPLICAS: u32 = 200;
/// Default expected pod boot time.
pub const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(45);
/// Default horizon as a multiple of the boot time (covers boot jitter and actuation delay).
pub const DEFAULT_HORIZON_FACTOR: f64 = 1.25;
/// Default window of the robust trend (median of differences).
pub const DEFAULT_TREND_WINDOW: Duration = Duration::from_secs(60);
/// Default spacing of the differences the robust trend takes the median of.
pub const DEFAULT_TREND_LAG: Duration = Duration::from_secs(5);
/// Default connection count at or below which a draining pod is removed.
pub const DEFAULT_DRAIN_REMOVE_BELOW: u32 = 0;
/// Default clamp on the forecast's relative growth rate (per second).
pub const DEFAULT_MAX_GROWTH_RATE: f64 = 0.01;
/// Default relative growth rate (per second) that enters surge mode.
pub const DEFAULT_SURGE_GROWTH_RATE: f64 = 0.004;
/// Default time surge mode lasts after its trigger clears.
pub const DEFAULT_SURGE_HOLD: Duration = Duration::from_secs(60);
/// Default window over which refused attempts count as unmet demand.
pub const DEFAULT_UNMET_WINDOW: Duration = Duration::from_secs(5);
/// Default window whose peak demand a scale-down must respect.
pub const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(120);
/// Default minimum time between two scale-down steps.
pub const DEFAULT_SCALE_DOWN_INTERVAL: Duration = Duration::from_secs(15);
/// Default largest scale-down step, as a fraction of current replicas (at least one pod).
pub const DEFAULT_SCALE_DOWN_STEP: f64 = 0.25;
/// Default tolerance band for scale-down (fraction of current replicas).
pub const DEFAULT_TOLERANCE: f64 = 0.05;
/// Default one-sample drop (fraction of live connections) treated as a reconnect storm.
pub const DEFAULT_STORM_DROP: f64 = 0.02;
/// Default time the pre-storm demand is held after a storm.
pub const DEFAULT_STORM_WINDOW: Duration = Duration::from_secs(120);

/// Every constant of tidegate's policy. Durations are written as human strings (`"45s"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TidegatePolicyConfig {
    /// Decision (and sampling) period. Default 1 s.
    #[serde(with = "duration_serde")]
    pub tick: Duration,
    /// Hard per-pod connection cap enforced by the proxy (connections). Default 1000.
    pub capacity: u32,
    /// Occupancy the policy sizes for in normal mode (fraction of `capacity`). Default 0.92.
    pub target_occupancy: f64,
    /// Occupancy the policy sizes for in surge mode (fraction of `capacity`). Default 0.8.
    pub surge_occupancy: f64,
    /// Occupancy the routed-to (serving) pods are sized for; ordered pods beyond them stand by
    /// empty (fraction of `capacity`). Default 0.95.
    pub serving_occupancy: f64,
    /// Serving pods are sized for the demand forecast this far ahead. Default 10 s.
    #[serde(with = "duration_serde")]
    pub serving_horizon: Duration,
    /// The serving set is sized for the peak of this window (it shrinks only after it).
    /// Default 60 s.
    #[serde(with = "duration_serde")]
    pub serving_window: Duration,
    /// Lower replica bound. Default 2.
    pub min_replicas: u32,
    /// Upper replica bound. Default 200.
    pub max_replicas: u32,
    /// Expected time from a replica patch to a Ready pod. Default 45 s.
    #[serde(with = "duration_serde")]
    pub boot_time: Duration,
    /// Forecast horizon as a multiple of `boot_time` (boot jitter, actuation). Default 1.25.
    pub horizon_factor: f64,
    /// The trend is the median slope over this window. Default 60 s.
    #[serde(with = "duration_serde")]
    pub trend_window: Duration,
    /// …of differences taken this far apart (less than `trend_window`). Default 5 s.
    #[serde(with = "duration_serde")]
    pub trend_lag: Duration,
    /// Clamp on the forecast's growth rate (fraction of level per second). Default 0.01.
    pub max_growth_rate: f64,
    /// Growth rate (fraction of level per second) that enters surge mode. Default 0.004.
    pub surge_growth_rate: f64,
    /// How long surge mode lasts after its trigger clears. Default 60 s.
    #[serde(with = "duration_serde")]
    pub surge_hold: Duration,
    /// Window over which refused attempts count as unmet demand. Default 5 s.
    #[serde(with = "duration_serde")]
    pub unmet_window: Duration,
    /// A scale-down must keep room for the peak demand of this window. Default 120 s.
    #[serde(with = "duration_serde")]
    pub scale_down_window: Duration,
    /// Minimum time between two scale-down steps. Default 15 s.
    #[serde(with = "duration_serde")]
    pub scale_down_interval: Duration,
    /// Largest scale-down step (fraction of current replicas, at least 1 pod). Default 0.25.
    pub scale_down_step: f64,
    /// Scale down only when fewer than `current·(1 − tolerance)` pods are needed. Default 0.05.
    pub tolerance: f64,
    /// A one-sample drop of live connections by this fraction is a reconnect storm. Default 0.02.
    pub storm_drop: f64,
    /// After a storm, demand is held at its pre-storm level this long. Default 120 s.
    #[serde(with = "duration_serde")]
    pub storm_window: Duration,
    /// The actuator removes a draining pod once it holds at most this many connections (the
    /// rest are disconnected and reconnect elsewhere). Default 0: only empty pods.
    pub drain_remove_below: u32,
}

impl Default for TidegatePolicyConfig {
    fn default() -> Self {
        TidegatePolicyConfig {
            tick: DEFAULT_TICK,
            capacity: DEFAULT_CAPACITY,
            target_occupancy: DEFAULT_TARGET_OCCUPANCY,
            surge_occupancy: DEFAULT_SURGE_OCCUPANCY,
            serving_occupancy: DEFAULT_SERVING_OCCUPANCY,
            serving_horizon: DEFAULT_SERVING_HORIZON,
            serving_window: DEFAULT_SERVING_WINDOW,
            min_replicas: DEFAULT_MIN_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            boot_time: DEFAULT_BOOT_TIME,
            horizon_factor: DEFAULT_HORIZON_FACTOR,
            trend_window: DEFAULT_TREND_WINDOW,
            trend_lag: DEFAULT_TREND_LAG,
            max_growth_rate: DEFAULT_MAX_GROWTH_RATE,
            surge_growth_rate: DEFAULT_SURGE_GROWTH_RATE,
            surge_hold: DEFAULT_SURGE_HOLD,
            unmet_window: DEFAULT_UNMET_WINDOW,
            scale_down_window: DEFAULT_SCALE_DOWN_WINDOW,
            scale_down_interval: DEFAULT_SCALE_DOWN_INTERVAL,
            scale_down_step: DEFAULT_SCALE_DOWN_STEP,
            tolerance: DEFAULT_TOLERANCE,
            storm_drop: DEFAULT_STORM_DROP,
            storm_window: DEFAULT_STORM_WINDOW,
            drain_remove_below: DEFAULT_DRAIN_REMOVE_BELOW,
        }
    }
}

impl TidegatePolicyConfig {
    /// Checks ranges and cross-field rules once, after parsing.
    pub fn validate(&self) -> Result<(), Error> {
        let frac = |field: &'static str, v: f64, lo: f64, hi: f64| {
            if v > lo && v <= hi {
                Ok(())
            } else {
                Err(Error::InvalidConfig {
                    field,
                    reason: format!("{v} is not in ({lo}, {hi}]"),
                })
            }
        };
        frac("target_occupancy", self.target_occupancy, 0.0, 1.0)?;
        frac("surge_occupancy", self.surge_occupancy, 0.0, 1.0)?;
        frac("serving_occupancy", self.serving_occupancy, 0.0, 1.0)?;
        frac("scale_down_step", self.scale_down_step, 0.0, 1.0)?;
        frac("storm_drop", self.storm_drop, 0.0, 1.0)?;
        frac("horizon_factor", self.horizon_factor, 0.0, 10.0)?;
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(Error::InvalidConfig {
                field: "tolerance",
                reason: format!("{} is not in [0, 1)", self.tolerance),
            });
        }
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(Error::InvalidConfig {
                field: "min_replicas",
                reason: format!(
                    "need 1 ≤ min_replicas ({}) ≤ max_replicas ({})",
                    self.min_replicas, self.max_replicas
                ),
            });
        }
        if self.trend_lag.is_zero() || self.trend_lag >= self.trend_window {
            return Err(Error::InvalidConfig {
                field: "trend_lag",
                reason: "need 0 < trend_lag < trend_window".into(),
            });
        }
        if self.capacity == 0 || self.tick.is_zero() {
            return Err(Error::InvalidConfig {
                field: "capacity",
                reason: "capacity and tick must be positive".into(),
            });
        }
        Ok(())
    }

    /// Samples (ticks) in the trend window and in the lag.
    pub fn trend_samples(&self) -> (usize, usize) {
        let tick = self.tick.as_secs_f64().max(1e-3);
        let window = (self.trend_window.as_secs_f64() / tick).round() as usize;
        let lag = (self.trend_lag.as_secs_f64() / tick).round() as usize;
        (window.max(2), lag.max(1))
    }

    /// Forecast horizon: `boot_time × horizon_factor`.
    pub fn horizon(&self) -> Duration {
        self.boot_time.mul_f64(self.horizon_factor)
    }
}

/// Serde helpers for durations written as human strings (`"500ms"`, `"45s"`, `"2m"`).
pub mod duration_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use std::time::Duration;

    /// Parses a human duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {text:?}: {e} (expected e.g. \"30s\")"
            ))
        })
    }

    /// Writes a duration as a human string.
    pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = TidegatePolicyConfig::default();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: TidegatePolicyConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn partial_config_uses_defaults_and_unknown_fields_are_rejected() {
        let c: TidegatePolicyConfig =
            serde_json::from_str(r#"{"boot_time": "2m", "target_occupancy": 0.85}"#).unwrap();
        assert_eq!(c.boot_time, Duration::from_secs(120));
        assert_eq!(c.capacity, DEFAULT_CAPACITY);
        let err = serde_json::from_str::<TidegatePolicyConfig>(r#"{"boot": "2m"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let c = TidegatePolicyConfig {
            target_occupancy: 1.5,
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("target_occupancy"), "{err}");
        let c = TidegatePolicyConfig {
            min_replicas: 5,
            max_replicas: 3,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
