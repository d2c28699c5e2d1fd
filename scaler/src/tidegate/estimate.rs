//! What tidegate believes about demand, from what the edge sees each second: the demand now
//! (live connections plus the demand the pods could not take), its growth rate, the forecast,
//! whether connections are going unmet, and whether a reconnect storm is being held.

use std::time::Duration;

use crate::config::TidegatePolicyConfig;
use crate::forecast::RobustSlope;
use crate::history::{History, Sample};
use crate::policy::Observation;

/// A detected reconnect storm: demand is held at `floor` until `until`.
#[derive(Clone, Copy, Debug)]
struct Storm {
    until: Duration,
    floor: f64,
}

/// The demand estimate and everything derived from it.
#[derive(Clone, Debug)]
pub(super) struct Estimate {
    history: History,
    /// Robust slopes of `ln(demand + one pod)` over the short and the long window: relative
    /// growth rates, each shrunk by its error.
    trend: RobustSlope,
    long_trend: RobustSlope,
    rate: f64,
    demand: f64,
    /// Median demand of the last trend lag: the level the forecast grows from.
    level: f64,
    /// Seconds the level lags the newest sample by (half the lag).
    level_age: f64,
    /// Added to demand before taking logs: one pod's capacity.
    offset: f64,
    last_live: Option<f64>,
    storm: Option<Storm>,
    last_unmet: Option<Duration>,
    /// Largest demand seen since the current episode of unmet demand began.
    unmet_peak: f64,
}

impl Estimate {
    pub fn new(cfg: &TidegatePolicyConfig) -> Self {
        let tick = cfg.tick.as_secs_f64().max(1e-3);
        let (window, lag) = cfg.trend_samples();
        let (long, long_lag) = cfg.long_trend_samples();
        Estimate {
            long_trend: RobustSlope::new(long, long_lag),
            history: History::new((cfg.unmet_window.as_secs_f64() / tick).ceil() as usize + 2),
            trend: RobustSlope::new(window, lag),
            rate: 0.0,
            demand: 0.0,
            level: 0.0,
            level_age: lag as f64 * cfg.tick.as_secs_f64() / 2.0,
            offset: f64::from(cfg.capacity),
            last_live: None,
            storm: None,
            last_unmet: None,
            unmet_peak: 0.0,
        }
    }

    /// Demand now (connections).
    pub fn demand(&self) -> f64 {
        self.demand
    }

    /// Demand `h` ahead: the level (the median of the last trend lag, so that a noise peak is
    /// not projected as if it would last) grown from its own time at the (non-negative) rate,
    /// at most [`Estimate::most`]. The rate is that of `ln(demand + one pod)`, so growth
    /// compounds for surges that double rather than add, and is about linear while demand is
    /// a pod or two (a ramp from nothing is not read as infinite growth).
    pub fn forecast(&self, cfg: &TidegatePolicyConfig, h: Duration) -> f64 {
        let h = h + Duration::from_secs_f64(self.level_age);
        let grown = (self.level + self.offset) * (self.rate.max(0.0) * h.as_secs_f64()).exp();
        (grown - self.offset).min(self.most(cfg))
    }

    /// The most any forecast may be: `max_forecast_growth` times the level.
    pub fn most(&self, cfg: &TidegatePolicyConfig) -> f64 {
        (self.level + self.offset) * cfg.max_forecast_growth - self.offset
    }

    /// True within `surge_hold` of the last held or refused connection (outside storms).
    pub fn unmet(&self, cfg: &TidegatePolicyConfig, now: Duration) -> bool {
        self.last_unmet.is_some_and(|t| now < t + cfg.surge_hold)
    }

    /// The largest demand of the current episode of unmet demand (0 outside one).
    pub fn unmet_peak(&self, cfg: &TidegatePolicyConfig, now: Duration) -> f64 {
        if self.unmet(cfg, now) {
            self.unmet_peak
        } else {
            0.0
        }
    }

    /// True while a detected reconnect storm is held at `now`.
    pub fn in_storm(&self, now: Duration) -> bool {
        self.storm.is_some_and(|s| now < s.until)
    }

    /// Takes one second of what the edge saw.
    pub fn observe(&mut self, cfg: &TidegatePolicyConfig, now: Duration, obs: &Observation<'_>) {
        let live = obs.connections() as f64;
        let queued = f64::from(obs.queued);
        self.history.push(Sample {
            at: now,
            connections: live as u64,
            queued: u64::from(obs.queued),
            refused: u64::from(obs.refused),
        });
        self.detect_storm(cfg, now, live);
        let refused = self.history.refused_within(now, cfg.unmet_window) as f64;
        let storm = self.storm.filter(|s| now < s.until);
        self.demand = match storm {
            // Reconnecting clients are already counted in the pre-storm floor.
            Some(s) => (live + queued).max(s.floor),
            // A refused client comes back and is held again: count it once.
            None => live + queued.max(refused),
        };
        let x = (self.demand + self.offset).ln();
        self.trend.push(now.as_secs_f64(), x);
        self.long_trend.push(now.as_secs_f64(), x);
        let (_, lag) = cfg.trend_samples();
        self.level = (self.trend.recent_median(lag).exp() - self.offset).max(0.0);
        let shrink = |(rate, error): (f64, f64)| {
            (rate.abs() - cfg.trend_confidence * error).max(0.0) * rate.signum()
        };
        let short = shrink(self.trend.slope_and_error());
        let long = shrink(self.long_trend.slope_and_error());
        let rate = if short >= cfg.surge_growth_rate {
            short.max(long)
        } else {
            long
        };
        let max = cfg.max_growth_rate;
        self.rate = rate.clamp(-max, max);
        let saturated = obs.queued > 0 || refused > 0.0;
        // Just after a saturation ends, the rise of live connections is the backlog of refused
        // clients getting in, not demand growth.
        if !saturated && self.unmet(cfg, now) {
            self.rate = self.rate.min(0.0);
        }
        if storm.is_none() && saturated {
            if !self.unmet(cfg, now) {
                self.unmet_peak = 0.0;
            }
            self.last_unmet = Some(now);
            self.unmet_peak = self.unmet_peak.max(self.demand);
        }
    }

    fn detect_storm(&mut self, cfg: &TidegatePolicyConfig, now: Duration, live: f64) {
        if let Some(prev) = self.last_live
            && prev > 0.0
            && prev - live >= cfg.storm_drop * prev
        {
            let held = self
                .storm
                .filter(|s| now < s.until)
                .map_or(0.0, |s| s.floor);
            self.storm = Some(Storm {
                until: now + cfg.storm_window,
                floor: held.max(self.demand),
            });
        }
        self.last_live = Some(live);
    }
}
