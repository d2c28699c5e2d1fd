//! tidegate's policy configuration: every constant of the policy is a field here, with its unit
//! and default documented, parsed from the `scaler.policy` section of the config file.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::Error;

/// Default decision period.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default hard per-pod connection cap (the proxy refuses beyond it).
pub const DEFAULT_CAPACITY: u32 = 1000;
/// Default occupancy a scale-up sizes for (fraction of capacity).
pub const DEFAULT_TARGET_OCCUPANCY: f64 = 0.94;
/// Default occupancy, at the forecast horizon, that triggers a scale-up.
pub const DEFAULT_SCALE_UP_OCCUPANCY: f64 = 0.97;
/// Default occupancy the peak of the scale-down window must fit into after a scale-down.
pub const DEFAULT_SCALE_DOWN_OCCUPANCY: f64 = 0.85;
/// Default occupancy a scale-down sizes for.
pub const DEFAULT_SCALE_DOWN_TARGET: f64 = 0.85;
/// Default occupancy sized for while the edge holds or refuses connections.
pub const DEFAULT_SURGE_OCCUPANCY: f64 = 0.9;
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
/// Default shortest trend window (the windows double from it).
pub const DEFAULT_TREND_SHORTEST: Duration = Duration::from_secs(15);
/// Default longest trend window (at least two forecast horizons).
pub const DEFAULT_TREND_LONGEST: Duration = Duration::from_secs(300);
/// Default number of noise spreads a window's growth is believed below its slope.
pub const DEFAULT_TREND_NOISE_Z: f64 = 2.5;
/// Default window over which each trend window learns its own noise.
pub const DEFAULT_TREND_NOISE_WINDOW: Duration = Duration::from_secs(1200);
/// Default reach of a window's growth rate, in its own lengths.
pub const DEFAULT_TREND_REACH: f64 = 2.0;
/// Default connection count at or below which a draining pod is removed.
pub const DEFAULT_DRAIN_REMOVE_BELOW: u32 = 0;
/// Default clamp on the forecast's relative growth rate (per second).
pub const DEFAULT_MAX_GROWTH_RATE: f64 = 0.01;
/// Default cap on how many times current demand the forecast may be.
pub const DEFAULT_MAX_FORECAST_GROWTH: f64 = 1.6;
/// Default window of forecast errors the scale-up margin is read from.
pub const DEFAULT_FORECAST_ERROR_WINDOW: Duration = Duration::from_secs(1200);
/// Default quantile of those errors the scale-up margin is.
pub const DEFAULT_FORECAST_ERROR_QUANTILE: f64 = 0.9;
/// Default window whose peak demand a scale-up sizes for.
pub const DEFAULT_ENVELOPE_WINDOW: Duration = Duration::from_secs(60);
/// Default time after the edge last held or refused a connection during which there is no
/// scale-down and rising live counts are not read as growth.
pub const DEFAULT_SURGE_HOLD: Duration = Duration::from_secs(60);
/// Default window over which refused attempts count as unmet demand.
pub const DEFAULT_UNMET_WINDOW: Duration = Duration::from_secs(5);
/// Default shortest window of evidence a scale-down needs.
pub const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);
/// Default length of the scale-down evidence in boot times (when longer than the window).
pub const DEFAULT_SCALE_DOWN_BOOTS: f64 = 2.0;
/// Default minimum time between two scale-down steps.
pub const DEFAULT_SCALE_DOWN_INTERVAL: Duration = Duration::from_secs(30);
/// Default largest scale-down step, as a fraction of current replicas (at least one pod).
pub const DEFAULT_SCALE_DOWN_STEP: f64 = 0.25;
/// Default one-sample drop (fraction of live connections) treated as a reconnect storm.
pub const DEFAULT_STORM_DROP: f64 = 0.02;
/// Default time the pre-storm demand is held after a storm.
pub const DEFAULT_STORM_WINDOW: Duration = Duration::from_secs(300);

/// Every constant of tidegate's policy. Durations are written as human strings (`"45s"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TidegatePolicyConfig {
    /// Decision (and sampling) period. Default 1 s.
    #[serde(with = "duration_serde")]
    pub tick: Duration,
    /// Hard per-pod connection cap enforced by the proxy (connections). Default 1000.
    pub capacity: u32,
    /// Occupancy a scale-up sizes for, and the steady state at start (fraction of
    /// `capacity`). Default 0.94.
    pub target_occupancy: f64,
    /// A scale-up happens when demand, now or forecast at the horizon, exceeds this
    /// occupancy of the pods asked for (fraction of `capacity`). Default 0.97.
    pub scale_up_occupancy: f64,
    /// A scale-down to `m` pods needs the peak of the scale-down window to fit `m` pods at
    /// this occupancy (fraction of `capacity`; at most `target_occupancy`). Default 0.85.
    pub scale_down_occupancy: f64,
    /// A scale-down goes to what the peak of the evidence window needs at this occupancy
    /// (fraction of `capacity`; from `scale_down_occupancy` to `target_occupancy`): higher
    /// gives back more of an overshoot, lower keeps more room for the next peak. Default 0.85.
    pub scale_down_target: f64,
    /// Occupancy sized for while the edge holds or refuses connections: the demand it counts
    /// then misses clients backing off, and the pods the edge routes to in the meantime keep
    /// their connections long after. Default 0.9.
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
    /// The growth rate is read over windows of this length, twice it, four times it, … up to
    /// `trend_longest`: each the median of differences a quarter window apart, believed down to
    /// `trend_noise_z` of its own noise below it. The level forecasts grow from is the median
    /// of this window. At least four ticks. Default 15 s.
    #[serde(with = "duration_serde")]
    pub trend_shortest: Duration,
    /// The longest trend window, at least two forecast horizons: slow growth that no short
    /// window can tell from noise is read here. Default 300 s.
    #[serde(with = "duration_serde")]
    pub trend_longest: Duration,
    /// A window's growth is believed down to this many of its noise spreads below its slope
    /// (the noise is how much the window's slope changes over one window length on this load).
    /// Default 2.5.
    pub trend_noise_z: f64,
    /// Each trend window learns its noise over this window. Default 1200 s.
    #[serde(with = "duration_serde")]
    pub trend_noise_window: Duration,
    /// A window's growth rate is projected at most this many of its own lengths ahead: a trend
    /// seen for 15 s says little about the next two minutes. Default 2.
    pub trend_reach: f64,
    /// Clamp on the forecast's growth rate (fraction of level per second). Default 0.01.
    pub max_growth_rate: f64,
    /// The forecast is at most this many times demand now: when compounded growth stops, the
    /// pods ordered for it are surplus, so beyond this a surge is allowed to cost refusals
    /// rather than pod-seconds. Default 1.6.
    pub max_forecast_growth: f64,
    /// Every forecast is checked against demand when its horizon comes; a scale-up adds the
    /// `forecast_error_quantile` of the relative under-forecasts of this window as margin.
    /// Default 1200 s.
    #[serde(with = "duration_serde")]
    pub forecast_error_window: Duration,
    /// The quantile of recent forecast errors a scale-up adds as margin (0–1). Default 0.9.
    pub forecast_error_quantile: f64,
    /// A scale-up sizes at least for the peak demand of this window (noise it has seen will
    /// come again). Default 60 s.
    #[serde(with = "duration_serde")]
    pub envelope_window: Duration,
    /// After the edge last held or refused a connection: no scale-down for this long, and
    /// rising live counts are the backlog getting in, not growth. Default 60 s.
    #[serde(with = "duration_serde")]
    pub surge_hold: Duration,
    /// Window over which refused attempts count as unmet demand. Default 5 s.
    #[serde(with = "duration_serde")]
    pub unmet_window: Duration,
    /// A scale-down needs evidence over this window or `scale_down_boots` boot times,
    /// whichever is longer: no scale-up in it, nothing booting, and its peak demand and
    /// forecast fitting the smaller count at `scale_down_occupancy`. Default 300 s.
    #[serde(with = "duration_serde")]
    pub scale_down_window: Duration,
    /// Length of the scale-down evidence in boot times, when longer than
    /// `scale_down_window`. Default 2.
    pub scale_down_boots: f64,
    /// Minimum time between two scale-down steps. Default 30 s.
    #[serde(with = "duration_serde")]
    pub scale_down_interval: Duration,
    /// Largest scale-down step (fraction of current replicas, at least 1 pod). Default 0.25.
    pub scale_down_step: f64,
    /// A one-sample drop of live connections by this fraction is a reconnect storm. Default 0.02.
    pub storm_drop: f64,
    /// After a storm, demand is held at its pre-storm level (and there is no scale-down) this
    /// long. Default 300 s.
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
            scale_up_occupancy: DEFAULT_SCALE_UP_OCCUPANCY,
            scale_down_occupancy: DEFAULT_SCALE_DOWN_OCCUPANCY,
            scale_down_target: DEFAULT_SCALE_DOWN_TARGET,
            surge_occupancy: DEFAULT_SURGE_OCCUPANCY,
            serving_occupancy: DEFAULT_SERVING_OCCUPANCY,
            serving_horizon: DEFAULT_SERVING_HORIZON,
            serving_window: DEFAULT_SERVING_WINDOW,
            min_replicas: DEFAULT_MIN_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            boot_time: DEFAULT_BOOT_TIME,
            horizon_factor: DEFAULT_HORIZON_FACTOR,
            trend_shortest: DEFAULT_TREND_SHORTEST,
            trend_longest: DEFAULT_TREND_LONGEST,
            trend_noise_z: DEFAULT_TREND_NOISE_Z,
            trend_noise_window: DEFAULT_TREND_NOISE_WINDOW,
            trend_reach: DEFAULT_TREND_REACH,
            max_growth_rate: DEFAULT_MAX_GROWTH_RATE,
            max_forecast_growth: DEFAULT_MAX_FORECAST_GROWTH,
            envelope_window: DEFAULT_ENVELOPE_WINDOW,
            forecast_error_window: DEFAULT_FORECAST_ERROR_WINDOW,
            forecast_error_quantile: DEFAULT_FORECAST_ERROR_QUANTILE,
            surge_hold: DEFAULT_SURGE_HOLD,
            unmet_window: DEFAULT_UNMET_WINDOW,
            scale_down_window: DEFAULT_SCALE_DOWN_WINDOW,
            scale_down_boots: DEFAULT_SCALE_DOWN_BOOTS,
            scale_down_interval: DEFAULT_SCALE_DOWN_INTERVAL,
            scale_down_step: DEFAULT_SCALE_DOWN_STEP,
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
        frac("scale_up_occupancy", self.scale_up_occupancy, 0.0, 1.0)?;
        frac(
            "scale_down_occupancy",
            self.scale_down_occupancy,
            0.0,
            self.target_occupancy,
        )?;
        frac(
            "scale_down_target",
            self.scale_down_target,
            self.scale_down_occupancy - 1e-9,
            self.target_occupancy,
        )?;
        frac("surge_occupancy", self.surge_occupancy, 0.0, 1.0)?;
        frac("serving_occupancy", self.serving_occupancy, 0.0, 1.0)?;
        frac("scale_down_step", self.scale_down_step, 0.0, 1.0)?;
        frac("storm_drop", self.storm_drop, 0.0, 1.0)?;
        frac("horizon_factor", self.horizon_factor, 0.0, 10.0)?;
        frac(
            "forecast_error_quantile",
            self.forecast_error_quantile,
            0.0,
            1.0,
        )?;
        if !(0.0..=10.0).contains(&self.trend_noise_z) {
            return Err(Error::InvalidConfig {
                field: "trend_noise_z",
                reason: format!("{} is not in [0, 10]", self.trend_noise_z),
            });
        }
        frac("trend_reach", self.trend_reach, 0.0, 1000.0)?;
        frac("scale_down_boots", self.scale_down_boots, 0.0, 100.0)?;
        if !(1.0..=100.0).contains(&self.max_forecast_growth) {
            return Err(Error::InvalidConfig {
                field: "max_forecast_growth",
                reason: format!("{} is not in [1, 100]", self.max_forecast_growth),
            });
        }
        if self.target_occupancy > self.scale_up_occupancy {
            return Err(Error::InvalidConfig {
                field: "target_occupancy",
                reason: format!(
                    "{} is above scale_up_occupancy ({}): every scale-up would trigger the next",
                    self.target_occupancy, self.scale_up_occupancy
                ),
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
        if self.trend_shortest < self.tick * 4 {
            return Err(Error::InvalidConfig {
                field: "trend_shortest",
                reason: format!(
                    "{:?} is shorter than four ticks ({:?})",
                    self.trend_shortest,
                    self.tick * 4
                ),
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

    /// Ticks in the shortest and the longest trend window (the longest at least two horizons)
    /// and in the trend windows' noise window.
    pub fn trend_ticks(&self) -> (usize, usize, usize) {
        let ticks = |d: Duration| (d.as_secs_f64() / self.tick.as_secs_f64().max(1e-3)).round();
        let shortest = (ticks(self.trend_shortest) as usize).max(4);
        let longest = (ticks(self.trend_longest.max(self.horizon() * 2)) as usize).max(shortest);
        (shortest, longest, ticks(self.trend_noise_window) as usize)
    }

    /// Forecast horizon: `boot_time × horizon_factor`.
    pub fn horizon(&self) -> Duration {
        self.boot_time.mul_f64(self.horizon_factor)
    }

    /// The evidence a scale-down needs: `scale_down_window` or `scale_down_boots` boot times,
    /// whichever is longer.
    pub fn scale_down_evidence(&self) -> Duration {
        self.scale_down_window
            .max(self.boot_time.mul_f64(self.scale_down_boots))
    }

    /// The steady state for `demand` connections, within the replica bounds: what a scale-up
    /// would size for.
    pub fn steady_replicas(&self, demand: f64) -> u32 {
        let per_pod = self.target_occupancy * f64::from(self.capacity);
        crate::policy::pods_for(demand, per_pod).clamp(self.min_replicas, self.max_replicas)
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
