//! Generated traces: fourteen families of load shapes with random parameters, so that a policy
//! is judged on traces it was not tuned on. A trace is named `gen:<family>:<seed>`; the same
//! name always gives the same trace ([`generate`]), and [`describe`] prints its parameters.
//!
//! | family | shape (parameters drawn uniformly from the ranges) |
//! |---|---|
//! | `flat` | 3k–25k, AR(1) noise 1–4 % (std), 2 h |
//! | `spikes` | 3k–15k with noise 1–3 %; 2–4 isolated spikes +20–80 %, rising in 5–30 s, held 10–120 s, falling in 30–300 s |
//! | `linear` | slow linear growth 1k–4k → 15k–35k over 2–3 h, noise 1–4 %, then 10 min held |
//! | `noisy-ramp` | 1k–4k → 10k–25k over 1–2 h with noise 3–6 %, held 15 min, back down over 30–60 min |
//! | `compound` | compound surge: 1k–3k growing e^(t/τ), τ 90–300 s, to 15k–50k, held 15 min, noise 1 % |
//! | `double-surge` | a surge (τ 60–200 s) to 8k–20k, held 5–15 min, easing to 50–80 %, then a second surge to 1.2–2 × the first |
//! | `sawtooth` | 3k–8k; 4–8 teeth rising over 5–15 min to 1.5–2.5 × base, dropping back in 1–30 s |
//! | `diurnal` | mean 8k–25k, amplitude 40–80 %, period 1–3 h, two periods, noise 1–3 % |
//! | `evening` | evening peak: 2k–5k → 15k–30k over 30–90 min (smooth), plateau 20–60 min, fall over 30–90 min, noise 2–4 % |
//! | `step` | 2k–8k; 1–3 instant steps of +50–300 % of base, each held 10–20 min; back to base |
//! | `flash` | flash crowd: 3k–8k, + 3–6 × base on a logistic (10–90 % in 10–60 s), held 0–120 s, half-life 5–20 min |
//! | `storm` | reconnect storm: 10k–25k, noise 1–2 %; 1–3 hard kills of 1–4 pods; a third of the traces reconnect as a herd |
//! | `lognormal` | a flat, linear, evening or diurnal shape with lognormal session lifetimes (median 3–8 min, σ 0.9–1.5) |
//! | `rolling` | rolling-deploy storm: 8k–25k, noise 1–2 %, 1–2 rolling updates (maxSurge 25 %, maxUnavailable 25 %) |
//!
//! Noise is multiplicative AR(1) on 10 s knots (φ 0.9), linearly interpolated; its standard
//! deviation is the stationary one. Marks (for time to cover and settling time) are the steps,
//! the starts of spikes, surges and flash crowds, the sawtooth drops, the kills and rollouts.

use std::time::Duration;

use super::setup::{Lifetime, Reconnect};
use super::trace::{Event, Trace, tabulate};
use crate::Error;
use crate::rng::Rng;

/// A family of generated traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Flat load with noise.
    Flat,
    /// Isolated spikes on a flat load.
    Spikes,
    /// Slow linear growth.
    Linear,
    /// A noisy ramp up and down.
    NoisyRamp,
    /// Compounded (exponential) growth to a plateau.
    Compound,
    /// Two surges, the second higher.
    DoubleSurge,
    /// Slow rises and sudden drops.
    Sawtooth,
    /// Sinusoidal days.
    Diurnal,
    /// An evening peak: rise, plateau, fall.
    Evening,
    /// Instant steps up and back.
    Step,
    /// A flash crowd.
    Flash,
    /// Hard pod kills on a steady load.
    Storm,
    /// Lognormal session lifetimes.
    Lognormal,
    /// Rolling updates on a steady load.
    Rolling,
}

impl Family {
    /// Every family, in report order.
    pub const ALL: [Family; 14] = [
        Family::Flat,
        Family::Spikes,
        Family::Linear,
        Family::NoisyRamp,
        Family::Compound,
        Family::DoubleSurge,
        Family::Sawtooth,
        Family::Diurnal,
        Family::Evening,
        Family::Step,
        Family::Flash,
        Family::Storm,
        Family::Lognormal,
        Family::Rolling,
    ];

    /// The family's name in trace specs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::Flat => "flat",
            Family::Spikes => "spikes",
            Family::Linear => "linear",
            Family::NoisyRamp => "noisy-ramp",
            Family::Compound => "compound",
            Family::DoubleSurge => "double-surge",
            Family::Sawtooth => "sawtooth",
            Family::Diurnal => "diurnal",
            Family::Evening => "evening",
            Family::Step => "step",
            Family::Flash => "flash",
            Family::Storm => "storm",
            Family::Lognormal => "lognormal",
            Family::Rolling => "rolling",
        }
    }

    /// Demand here rises faster than a pod boots, so that no policy without foresight can
    /// serve it: judged against Oracle-causal rather than HPA-prom's tenth.
    pub fn instant(self) -> bool {
        matches!(self, Family::Step | Family::Flash)
    }

    /// Pods are killed or replaced by a script: no scale-down may follow.
    pub fn storm(self) -> bool {
        matches!(self, Family::Storm | Family::Rolling)
    }
}

/// Parses `<family>:<seed>`.
pub fn parse_spec(text: &str) -> Result<(Family, u64), Error> {
    let bad = || Error::UnknownTrace {
        name: format!("gen:{text}"),
        known: "gen:<family>:<seed> with a family of flat, spikes, linear, noisy-ramp, \
                compound, double-surge, sawtooth, diurnal, evening, step, flash, storm, \
                lognormal, rolling",
    };
    let (name, seed) = text.split_once(':').ok_or_else(bad)?;
    let family = Family::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(bad)?;
    let seed = seed.parse().map_err(|_| bad())?;
    Ok((family, seed))
}

/// The trace `gen:<family>:<seed>`.
pub fn generate(family: Family, seed: u64) -> Trace {
    shape(family, seed).0
}

/// The parameters of `gen:<family>:<seed>`, in words.
pub fn describe(family: Family, seed: u64) -> String {
    shape(family, seed).1
}

/// What a family's generator draws, before it becomes a [`Trace`].
#[derive(Default)]
struct Shape {
    demand: Vec<f64>,
    events: Vec<Event>,
    marks: Vec<f64>,
    lifetime: Option<Lifetime>,
    reconnect: Option<Reconnect>,
    params: String,
}

fn shape(family: Family, seed: u64) -> (Trace, String) {
    let mut rng = Rng::new(seed, 0x6E17 + family as u64);
    let s = match family {
        Family::Flat => flat(&mut rng),
        Family::Spikes => spikes(&mut rng),
        Family::Linear => linear(&mut rng),
        Family::NoisyRamp => noisy_ramp(&mut rng),
        Family::Compound => compound(&mut rng),
        Family::DoubleSurge => double_surge(&mut rng),
        Family::Sawtooth => sawtooth(&mut rng),
        Family::Diurnal => diurnal(&mut rng),
        Family::Evening => evening(&mut rng),
        Family::Step => step(&mut rng),
        Family::Flash => flash(&mut rng),
        Family::Storm => storm(&mut rng),
        Family::Lognormal => lognormal(&mut rng),
        Family::Rolling => rolling(&mut rng),
    };
    let trace = Trace {
        events: s.events,
        marks: s
            .marks
            .iter()
            .map(|&m| Duration::from_secs_f64(m))
            .collect(),
        lifetime: s.lifetime,
        reconnect: s.reconnect,
        ..Trace::new(format!("gen:{}:{seed}", family.name()), s.demand)
    };
    (trace, s.params)
}

/// Multiplicative AR(1) noise (φ 0.9 per 10 s knot, stationary std `std`), per second.
pub(crate) fn noise(rng: &mut Rng, len: u64, std: f64) -> Vec<f64> {
    let innovation = std * (1.0 - 0.81f64).sqrt();
    let mut x = std * rng.normal();
    let knots: Vec<f64> = (0..=len / 10 + 1)
        .map(|_| {
            let now = x;
            x = 0.9 * x + innovation * rng.normal();
            now
        })
        .collect();
    (0..=len)
        .map(|t| {
            let (k, f) = ((t / 10) as usize, (t % 10) as f64 / 10.0);
            knots[k] + (knots[k + 1] - knots[k]) * f
        })
        .collect()
}

/// `base(t)·(1 + noise)` over `len` seconds.
fn noisy(rng: &mut Rng, len: u64, std: f64, base: impl FnMut(f64) -> f64) -> Vec<f64> {
    let n = noise(rng, len, std);
    let mut base = base;
    tabulate(len, |t| (base(t) * (1.0 + n[t as usize])).max(0.0))
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn pct(x: f64) -> f64 {
    (100.0 * x).round()
}

fn flat(rng: &mut Rng) -> Shape {
    let (level, std) = (rng.uniform(3e3, 25e3), rng.uniform(0.01, 0.04));
    Shape {
        demand: noisy(rng, 7200, std, |_| level),
        params: format!("flat {level:.0}, noise {} %", pct(std)),
        ..Shape::default()
    }
}

fn spikes(rng: &mut Rng) -> Shape {
    let (base, std) = (rng.uniform(3e3, 15e3), rng.uniform(0.01, 0.03));
    let count = 2 + rng.below(3) as usize;
    let mut spikes = Vec::new();
    let mut at = rng.uniform(600.0, 1200.0);
    for _ in 0..count {
        let (h, rise, hold, fall) = (
            rng.uniform(0.2, 0.8),
            rng.uniform(5.0, 30.0),
            rng.uniform(10.0, 120.0),
            rng.uniform(30.0, 300.0),
        );
        spikes.push((at, h, rise, hold, fall));
        at += rng.uniform(1200.0, 2400.0);
    }
    let len = (at as u64).max(5400);
    let list = spikes.clone();
    let demand = noisy(rng, len, std, move |t| {
        let extra: f64 = list
            .iter()
            .map(|&(s, h, rise, hold, fall)| {
                let x = t - s;
                if x < 0.0 || x > rise + hold + fall {
                    0.0
                } else if x < rise {
                    h * x / rise
                } else if x < rise + hold {
                    h
                } else {
                    h * (1.0 - (x - rise - hold) / fall)
                }
            })
            .sum();
        base * (1.0 + extra)
    });
    let heights: Vec<String> = spikes
        .iter()
        .map(|s| format!("+{}% in {:.0}s for {:.0}s", pct(s.1), s.2, s.3))
        .collect();
    Shape {
        demand,
        marks: spikes.iter().map(|s| s.0).collect(),
        params: format!(
            "base {base:.0}, noise {} %, spikes {}",
            pct(std),
            heights.join(", ")
        ),
        ..Shape::default()
    }
}

fn linear(rng: &mut Rng) -> Shape {
    let (from, to) = (rng.uniform(1e3, 4e3), rng.uniform(15e3, 35e3));
    let (up, std) = (rng.uniform(7200.0, 10800.0), rng.uniform(0.01, 0.04));
    let len = (up + 600.0) as u64;
    Shape {
        demand: noisy(rng, len, std, |t| from + (to - from) * (t / up).min(1.0)),
        params: format!(
            "{from:.0} → {to:.0} over {:.0} min, noise {} %",
            up / 60.0,
            pct(std)
        ),
        ..Shape::default()
    }
}

fn noisy_ramp(rng: &mut Rng) -> Shape {
    let (from, to) = (rng.uniform(1e3, 4e3), rng.uniform(10e3, 25e3));
    let (up, down) = (rng.uniform(3600.0, 7200.0), rng.uniform(1800.0, 3600.0));
    let std = rng.uniform(0.03, 0.06);
    let hold = 900.0;
    let len = (up + hold + down + 300.0) as u64;
    let demand = noisy(rng, len, std, |t| {
        let x = if t < up {
            t / up
        } else if t < up + hold {
            1.0
        } else {
            1.0 - ((t - up - hold) / down).min(1.0)
        };
        from + (to - from) * x
    });
    Shape {
        demand,
        params: format!(
            "{from:.0} → {to:.0} over {:.0} min, back over {:.0} min, noise {} %",
            up / 60.0,
            down / 60.0,
            pct(std)
        ),
        ..Shape::default()
    }
}

/// `base` for `lead` s, then `base·e^((t − lead)/tau)` up to `top`.
fn exp_rise(t: f64, lead: f64, base: f64, tau: f64, top: f64) -> f64 {
    if t < lead {
        base
    } else {
        (base * ((t - lead) / tau).exp()).min(top)
    }
}

fn compound(rng: &mut Rng) -> Shape {
    let (base, tau, top) = (
        rng.uniform(1e3, 3e3),
        rng.uniform(90.0, 300.0),
        rng.uniform(15e3, 50e3),
    );
    let lead = 300.0;
    let len = (lead + tau * (top / base).ln() + 900.0) as u64;
    Shape {
        demand: noisy(rng, len, 0.01, |t| exp_rise(t, lead, base, tau, top)),
        marks: vec![lead],
        params: format!("{base:.0} → {top:.0}, τ {tau:.0} s"),
        ..Shape::default()
    }
}

fn double_surge(rng: &mut Rng) -> Shape {
    let base = rng.uniform(1e3, 3e3);
    let (tau1, top1) = (rng.uniform(60.0, 200.0), rng.uniform(8e3, 20e3));
    let (hold, ease) = (rng.uniform(300.0, 900.0), rng.uniform(0.5, 0.8));
    let (tau2, top2) = (
        rng.uniform(60.0, 200.0),
        (top1 * rng.uniform(1.2, 2.0)).min(5e4),
    );
    let lead = 300.0;
    let peak1 = lead + tau1 * (top1 / base).ln() + hold;
    let second = peak1 + 600.0;
    let low = top1 * ease;
    let len = (second + tau2 * (top2 / low).ln() + 900.0) as u64;
    let demand = noisy(rng, len, 0.015, |t| {
        if t < peak1 {
            exp_rise(t, lead, base, tau1, top1)
        } else if t < second {
            top1 + (low - top1) * (t - peak1) / 600.0
        } else {
            exp_rise(t, second, low, tau2, top2)
        }
    });
    Shape {
        demand,
        marks: vec![lead, second],
        params: format!(
            "{base:.0} → {top1:.0} (τ {tau1:.0} s), ease to {low:.0}, → {top2:.0} (τ {tau2:.0} s)"
        ),
        ..Shape::default()
    }
}

fn sawtooth(rng: &mut Rng) -> Shape {
    let base = rng.uniform(3e3, 8e3);
    let teeth = 4 + rng.below(5) as usize;
    let mut list = Vec::new();
    let mut at = 600.0;
    for _ in 0..teeth {
        let (rise, top, drop) = (
            rng.uniform(300.0, 900.0),
            rng.uniform(1.5, 2.5),
            rng.uniform(1.0, 30.0),
        );
        list.push((at, rise, top, drop));
        at += rise + drop + rng.uniform(120.0, 600.0);
    }
    let len = at as u64 + 300;
    let teeth_copy = list.clone();
    let demand = noisy(rng, len, 0.02, move |t| {
        let f = teeth_copy
            .iter()
            .map(|&(s, rise, top, drop)| {
                let x = t - s;
                if x < 0.0 || x > rise + drop {
                    1.0
                } else if x < rise {
                    1.0 + (top - 1.0) * x / rise
                } else {
                    top - (top - 1.0) * (x - rise) / drop
                }
            })
            .fold(1.0, f64::max);
        base * f
    });
    Shape {
        demand,
        marks: list.iter().map(|&(s, rise, _, _)| s + rise).collect(),
        params: format!("base {base:.0}, {teeth} teeth up to ×1.5–2.5"),
        ..Shape::default()
    }
}

fn diurnal_shape(rng: &mut Rng) -> (Vec<f64>, String) {
    let mean = rng.uniform(8e3, 25e3);
    let (amp, period) = (rng.uniform(0.4, 0.8), rng.uniform(3600.0, 10800.0));
    let (phase, std) = (
        rng.uniform(0.0, std::f64::consts::TAU),
        rng.uniform(0.01, 0.03),
    );
    let len = (2.0 * period) as u64;
    let demand = noisy(rng, len, std, |t| {
        mean * (1.0 + amp * (std::f64::consts::TAU * t / period + phase).sin())
    });
    let params = format!(
        "mean {mean:.0} ± {} %, period {:.0} min, noise {} %",
        pct(amp),
        period / 60.0,
        pct(std)
    );
    (demand, params)
}

fn diurnal(rng: &mut Rng) -> Shape {
    let (demand, params) = diurnal_shape(rng);
    Shape {
        demand,
        params,
        ..Shape::default()
    }
}

fn evening_shape(rng: &mut Rng) -> (Vec<f64>, Vec<f64>, String) {
    let (base, peak) = (rng.uniform(2e3, 5e3), rng.uniform(15e3, 30e3));
    let (rise, plateau, fall) = (
        rng.uniform(1800.0, 5400.0),
        rng.uniform(1200.0, 3600.0),
        rng.uniform(1800.0, 5400.0),
    );
    let std = rng.uniform(0.02, 0.04);
    let lead = 900.0;
    let len = (lead + rise + plateau + fall + 900.0) as u64;
    let demand = noisy(rng, len, std, |t| {
        let x = if t < lead + rise {
            smoothstep((t - lead) / rise)
        } else if t < lead + rise + plateau {
            1.0
        } else {
            1.0 - smoothstep((t - lead - rise - plateau) / fall)
        };
        base + (peak - base) * x
    });
    let params = format!(
        "{base:.0} → {peak:.0} over {:.0} min, plateau {:.0} min, fall {:.0} min, noise {} %",
        rise / 60.0,
        plateau / 60.0,
        fall / 60.0,
        pct(std)
    );
    (demand, vec![lead, lead + rise + plateau], params)
}

fn evening(rng: &mut Rng) -> Shape {
    let (demand, marks, params) = evening_shape(rng);
    Shape {
        demand,
        marks,
        params,
        ..Shape::default()
    }
}

fn step(rng: &mut Rng) -> Shape {
    let base = rng.uniform(2e3, 8e3);
    let n = 1 + rng.below(3) as usize;
    let mut levels = Vec::new();
    let mut at = 600.0;
    for _ in 0..n {
        let (up, hold) = (rng.uniform(0.5, 3.0), rng.uniform(600.0, 1200.0));
        levels.push((at, base * (1.0 + up)));
        at += hold;
    }
    levels.push((at, base));
    let len = at as u64 + 900;
    let table = levels.clone();
    let demand = noisy(rng, len, 0.01, move |t| {
        table
            .iter()
            .rev()
            .find(|&&(s, _)| t >= s)
            .map_or(base, |&(_, l)| l)
    });
    let steps: Vec<String> = levels.iter().map(|l| format!("{:.0}", l.1)).collect();
    Shape {
        demand,
        marks: levels.iter().map(|l| l.0).collect(),
        params: format!("base {base:.0}, steps to {}", steps.join(" → ")),
        ..Shape::default()
    }
}

fn flash(rng: &mut Rng) -> Shape {
    let base = rng.uniform(3e3, 8e3);
    let extra = base * rng.uniform(3.0, 6.0);
    let (rise, centre) = (rng.uniform(10.0, 60.0), rng.uniform(600.0, 1200.0));
    let (hold, half) = (rng.uniform(0.0, 120.0), rng.uniform(300.0, 1200.0));
    let scale = rise / (2.0 * 9f64.ln());
    let end = centre + rise / 2.0 + hold;
    let demand = noisy(rng, 3600, 0.01, |t| {
        let up = 1.0 / (1.0 + (-(t - centre) / scale).exp());
        let decay = if t > end {
            0.5f64.powf((t - end) / half)
        } else {
            1.0
        };
        base + extra * up * decay
    });
    Shape {
        demand,
        marks: vec![centre - rise / 2.0],
        params: format!(
            "{base:.0} + {extra:.0} in {rise:.0} s, held {hold:.0} s, half-life {:.0} min",
            half / 60.0
        ),
        ..Shape::default()
    }
}

/// 1–`most` event times at least 10 min apart, the first after 10 min, within `len` s.
fn event_times(rng: &mut Rng, most: u64, len: f64) -> Vec<f64> {
    let n = 1 + rng.below(most);
    let mut at = rng.uniform(600.0, 900.0);
    let mut out = Vec::new();
    for _ in 0..n {
        if at > len - 600.0 {
            break;
        }
        out.push(at);
        at += rng.uniform(600.0, 1200.0);
    }
    out
}

fn storm(rng: &mut Rng) -> Shape {
    let (level, std) = (rng.uniform(10e3, 25e3), rng.uniform(0.01, 0.02));
    let herd = rng.below(3) == 0;
    let times = event_times(rng, 3, 3600.0);
    let events: Vec<Event> = times
        .iter()
        .map(|&at| Event::KillPods {
            at: Duration::from_secs_f64(at),
            pods: 1 + rng.below(4) as u32,
        })
        .collect();
    let kills: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::KillPods { at, pods } => format!("{pods} at {}s", at.as_secs()),
            Event::RollingDeploy { .. } => String::new(),
        })
        .collect();
    Shape {
        demand: noisy(rng, 3600, std, |_| level),
        events,
        marks: times,
        reconnect: herd.then_some(Reconnect::Herd),
        params: format!(
            "steady {level:.0}, noise {} %, kills {}, {}",
            pct(std),
            kills.join(", "),
            if herd { "herd" } else { "jittered reconnects" }
        ),
        ..Shape::default()
    }
}

fn lognormal(rng: &mut Rng) -> Shape {
    let (median, sigma) = (rng.uniform(180.0, 480.0), rng.uniform(0.9, 1.5));
    let mut s = match rng.below(4) {
        0 => flat(rng),
        1 => linear(rng),
        2 => evening(rng),
        _ => diurnal(rng),
    };
    s.lifetime = Some(Lifetime::Lognormal {
        median: Duration::from_secs_f64(median),
        sigma,
    });
    s.params = format!(
        "{}; lognormal lifetimes, median {:.1} min, σ {sigma:.2}",
        s.params,
        median / 60.0
    );
    s
}

fn rolling(rng: &mut Rng) -> Shape {
    let (level, std) = (rng.uniform(8e3, 25e3), rng.uniform(0.01, 0.02));
    let times = event_times(rng, 2, 5400.0);
    let events = times
        .iter()
        .map(|&at| Event::RollingDeploy {
            at: Duration::from_secs_f64(at),
            max_surge: 0.25,
            max_unavailable: 0.25,
        })
        .collect();
    let at: Vec<String> = times.iter().map(|t| format!("{t:.0}s")).collect();
    Shape {
        demand: noisy(rng, 5400, std, |_| level),
        events,
        marks: times,
        params: format!(
            "steady {level:.0}, noise {} %, rolling updates at {}",
            pct(std),
            at.join(", ")
        ),
        ..Shape::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_seeded_named_and_positive() {
        for f in Family::ALL {
            let a = generate(f, 3);
            assert_eq!(a, generate(f, 3), "{}", f.name());
            assert_ne!(a.demand, generate(f, 4).demand, "{}", f.name());
            assert_eq!(a.name, format!("gen:{}:3", f.name()));
            assert!(a.duration() >= Duration::from_secs(1200), "{}", f.name());
            assert!(a.demand.iter().all(|d| d.is_finite() && *d >= 0.0));
            assert!(a.demand.iter().cloned().fold(0.0, f64::max) <= 60_000.0);
            assert!(!describe(f, 3).is_empty());
        }
    }

    #[test]
    fn families_have_their_shape() {
        let s = generate(Family::Step, 1);
        let (m0, m1) = (s.marks[0].as_secs_f64(), s.marks[1].as_secs_f64());
        assert!(s.at(m0 + 1.0).0 > 1.4 * s.at(m0 - 1.0).0, "an instant step");
        assert!(s.at(m1 - 1.0).0 != s.at(m1 + 1.0).0);
        let f = generate(Family::Flat, 1);
        let mean = f.demand.iter().sum::<f64>() / f.demand.len() as f64;
        assert!(f.demand.iter().all(|d| (d / mean - 1.0).abs() < 0.25));
        assert!(matches!(
            generate(Family::Rolling, 1).events[0],
            Event::RollingDeploy { .. }
        ));
        assert!(generate(Family::Lognormal, 1).lifetime.is_some());
        assert_eq!(parse_spec("evening:17").unwrap(), (Family::Evening, 17));
        assert!(parse_spec("nope:1").is_err() && parse_spec("flat").is_err());
    }
}
