//! What tidegate believes about demand, from what the edge sees each second: the demand now
//! (live connections plus the demand the pods could not take), its growth rate, the forecast,
//! whether connections are going unmet, and whether a reconnect storm is being held.

use std::time::Duration;

use super::trend::Trend;
use crate::config::TidegatePolicyConfig;
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
    /// Growth rate of `ln(demand + one pod)` at several time scales.
    trend: Trend,
    /// The growth rate at the last second outside an episode of unmet demand (per second).
    rate_before_unmet: f64,
    /// The most any window's rate may be: `max_growth_rate`, and just after an episode of
    /// unmet demand the rate before it (per second).
    rate_cap: f64,
    demand: f64,
    /// Median demand of the shortest trend window: the level the forecast grows from.
    level: f64,
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
        let (shortest, longest, keep) = cfg.trend_ticks();
        Estimate {
            history: History::new((cfg.unmet_window.as_secs_f64() / tick).ceil() as usize + 2),
            trend: Trend::new(shortest, longest, keep, tick, cfg.trend_noise_z),
            rate_before_unmet: 0.0,
            rate_cap: cfg.max_growth_rate,
            demand: 0.0,
            level: 0.0,
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

    /// Demand `h` ahead: the level (the median of the shortest trend window, so that a noise
    /// peak is not projected as if it would last) grown from its own time as far as the trend
    /// windows believe ([`Trend::growth`]; each rate at most `max_growth_rate`, and just after
    /// unmet demand at most the rate before it), at most [`Estimate::most`]. Rates are those of
    /// `ln(demand + one pod)`, so growth compounds for surges that double rather than add, and
    /// is about linear while demand is a pod or two (a ramp from nothing is not read as
    /// infinite growth).
    pub fn forecast(&self, cfg: &TidegatePolicyConfig, h: Duration) -> f64 {
        let h = h.as_secs_f64() + self.trend.level_age();
        let growth = self.trend.growth(h, self.rate_cap, cfg.trend_reach);
        let grown = (self.level + self.offset) * growth.exp();
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
        self.trend.push(x);
        self.level = (self.trend.level().exp() - self.offset).max(0.0);
        let rate = self.trend.rate().min(cfg.max_growth_rate);
        let saturated = obs.queued > 0 || refused > 0.0;
        // Just after a saturation ends, the rise of live connections is the backlog of refused
        // clients getting in, not demand growth: the rate is held to what it was before the
        // episode began (growth that was there before it is still there).
        self.rate_cap = cfg.max_growth_rate;
        if !saturated && self.unmet(cfg, now) {
            self.rate_cap = self.rate_before_unmet;
        } else if !saturated {
            self.rate_before_unmet = rate;
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
