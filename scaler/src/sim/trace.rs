//! Demand traces D(t): the six named, seeded generators of the simulator's model
//! (`docs/architecture.md`, section "The simulator"), generated families (`gen:…`), and CSV files
//! (`t_seconds,connections`, header optional).
//!
//! A trace is demand sampled once per second, linearly interpolated in between (so D'(t) is
//! piecewise constant), plus scripted events such as pod kills. The generators:
//!
//! | name | shape |
//! |---|---|
//! | `step` | 2,000 for 300 s → 10,000 for 20 min → 2,000 for 20 min |
//! | `ramp` | 1,000 for 300 s, → 20,000 over 30 min, hold 10 min, → 1,000 over 30 min, 300 s tail |
//! | `surge` | 1,000 for 120 s, then 1,000·e^(t/120 s) up to 50,000, hold 15 min |
//! | `diurnal` | 20,000 + 15,000·sin(2πt/2 h) × (1 + AR(1)), φ 0.9, σ 2 % per 10 s step, 3 periods |
//! | `flash` | 5,000; +25,000 on a logistic (10–90 % in 30 s, centred at 600 s), held 60 s, then decaying with a 10 min half-life; 60 min |
//! | `storm` | 20,000 steady for 40 min; 1 pod killed hard at 600 s, 3 pods at 1,500 s |
//!
//! Only `diurnal` uses the seed (its AR(1) noise); the others are the same for every seed.

use std::path::Path;
use std::time::Duration;

use super::setup::{Lifetime, Reconnect};
use crate::Error;
use crate::rng::Rng;

/// The built-in trace names.
pub const TRACE_NAMES: &str = "step, ramp, surge, diurnal, flash, storm";

/// A pre-roll stays where every minute's mean demand is within this fraction of the first
/// minute's ([`Trace::preroll_secs`]).
pub const PREROLL_BAND: f64 = 0.1;

/// A scripted event in a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// Kill this many Ready pods hard at this time (a node loss, a crash).
    KillPods {
        /// When.
        at: Duration,
        /// How many pods.
        pods: u32,
    },
    /// A rolling update of the Deployment starts at this time: every pod is replaced, with at
    /// most `max_surge` extra pods and at most `max_unavailable` pods below `spec.replicas`
    /// (fractions of `spec.replicas`, rounded up and down as Kubernetes does).
    RollingDeploy {
        /// When.
        at: Duration,
        /// `maxSurge` as a fraction of replicas.
        max_surge: f64,
        /// `maxUnavailable` as a fraction of replicas.
        max_unavailable: f64,
    },
}

impl Event {
    /// When the event happens.
    pub fn at(&self) -> Duration {
        match self {
            Event::KillPods { at, .. } | Event::RollingDeploy { at, .. } => *at,
        }
    }
}

/// Demand over time, plus scripted events and the traits of its client population.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Name (built-in) or file path.
    pub name: String,
    /// D at t = 0, 1, 2, … seconds.
    pub demand: Vec<f64>,
    /// Scripted events, in time order.
    pub events: Vec<Event>,
    /// Times at which demand changes abruptly (steps, the start of a surge or a flash crowd):
    /// time-to-cover and settling time are measured from them.
    pub marks: Vec<Duration>,
    /// Session lifetimes of this population, if not the world's.
    pub lifetime: Option<Lifetime>,
    /// How this population reconnects, if not as the world says.
    pub reconnect: Option<Reconnect>,
}

impl Trace {
    /// A trace with no events, marks or population overrides.
    pub fn new(name: impl Into<String>, demand: Vec<f64>) -> Self {
        Trace {
            name: name.into(),
            demand,
            events: Vec::new(),
            marks: Vec::new(),
            lifetime: None,
            reconnect: None,
        }
    }

    /// Length of the trace.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.demand.len().saturating_sub(1) as u64)
    }

    /// This trace with every rolling update's `maxSurge` and `maxUnavailable` replaced by those
    /// given (fractions of replicas; `None` keeps the trace's).
    pub fn with_rollout(mut self, max_surge: Option<f64>, max_unavailable: Option<f64>) -> Trace {
        for e in &mut self.events {
            if let Event::RollingDeploy {
                max_surge: surge,
                max_unavailable: unavailable,
                ..
            } = e
            {
                *surge = max_surge.unwrap_or(*surge);
                *unavailable = max_unavailable.unwrap_or(*unavailable);
            }
        }
        self
    }

    /// This trace after a pre-roll of `secs` seconds: its first `secs` seconds played backwards,
    /// so that every policy has run on a load like the one at t = 0 before it is measured.
    /// Events and marks move by `secs`.
    pub fn with_preroll(&self, secs: u64) -> Trace {
        let n = (secs as usize).min(self.demand.len().saturating_sub(1));
        let shift = Duration::from_secs(n as u64);
        let mut demand: Vec<f64> = self.demand[1..=n].iter().rev().copied().collect();
        demand.extend_from_slice(&self.demand);
        let events = self
            .events
            .iter()
            .map(|e| match *e {
                Event::KillPods { at, pods } => Event::KillPods {
                    at: at + shift,
                    pods,
                },
                Event::RollingDeploy {
                    at,
                    max_surge,
                    max_unavailable,
                } => Event::RollingDeploy {
                    at: at + shift,
                    max_surge,
                    max_unavailable,
                },
            })
            .collect();
        Trace {
            demand,
            events,
            marks: self.marks.iter().map(|&m| m + shift).collect(),
            ..self.clone()
        }
    }

    /// The longest pre-roll up to `most` that stays before the first mark and event (so that
    /// a step or a kill is not played backwards), within half the trace, and within the
    /// trace's opening level: every minute of it has a mean demand within [`PREROLL_BAND`] of
    /// the first minute's. Without that last bound a load that starts rising before its first
    /// mark (a sawtooth's first tooth, a ramp) would be played backwards from well above D(0),
    /// and every policy would start sized for that higher load — with sticky sessions, for the
    /// whole trace.
    pub fn preroll_secs(&self, most: Duration) -> u64 {
        let first = self
            .marks
            .iter()
            .copied()
            .chain(self.events.iter().map(Event::at))
            .min()
            .map_or(u64::MAX, |d| d.as_secs().saturating_sub(1));
        most.as_secs()
            .min(first)
            .min(self.demand.len() as u64 / 2)
            .min(self.opening_level_secs())
    }

    /// How long the minute-mean of demand stays within [`PREROLL_BAND`] of the first
    /// minute's (s, to the centre of the first minute that leaves; the whole trace if none
    /// does, or if it opens at 0).
    fn opening_level_secs(&self) -> u64 {
        let d = &self.demand;
        let w = d.len().min(60);
        let mut sum: f64 = d[..w].iter().sum();
        let base = sum / w.max(1) as f64;
        if base <= 0.0 {
            return d.len() as u64;
        }
        for t in 0..d.len() - w {
            if (sum / w as f64 / base - 1.0).abs() > PREROLL_BAND {
                return (t + w / 2) as u64;
            }
            sum += d[t + w] - d[t];
        }
        d.len() as u64
    }

    /// D(t) and D'(t) (per second) at `t` seconds, linearly interpolated.
    pub fn at(&self, t: f64) -> (f64, f64) {
        let n = self.demand.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let i = (t.max(0.0) as usize).min(n - 1);
        if i + 1 >= n {
            return (self.demand[n - 1], 0.0);
        }
        let slope = self.demand[i + 1] - self.demand[i];
        (self.demand[i] + slope * (t - i as f64), slope)
    }
}

/// A built-in trace by name, a generated one (`gen:<family>:<seed>`, see
/// [`super::families`]), or a CSV file if `spec` ends in `.csv`.
pub fn load(spec: &str, seed: u64) -> Result<Trace, Error> {
    if spec.ends_with(".csv") {
        return from_csv(Path::new(spec));
    }
    if let Some(rest) = spec.strip_prefix("gen:") {
        return super::families::parse_spec(rest).map(|(f, s)| super::families::generate(f, s));
    }
    builtin(spec, seed)
}

/// One of the six named traces.
pub fn builtin(name: &str, seed: u64) -> Result<Trace, Error> {
    let secs = Duration::from_secs;
    let (demand, events, marks) = match name {
        "step" => (step(), vec![], vec![secs(300), secs(1500)]),
        "ramp" => (ramp(), vec![], vec![]),
        "surge" => (surge(), vec![], vec![secs(120)]),
        "diurnal" => (diurnal(seed), vec![], vec![]),
        "flash" => (flash(), vec![], vec![secs(585)]),
        "storm" => (
            vec![20_000.0; 2401],
            vec![
                Event::KillPods {
                    at: Duration::from_secs(600),
                    pods: 1,
                },
                Event::KillPods {
                    at: Duration::from_secs(1500),
                    pods: 3,
                },
            ],
            vec![secs(600), secs(1500)],
        ),
        _ => {
            return Err(Error::UnknownTrace {
                name: name.to_string(),
                known: TRACE_NAMES,
            });
        }
    };
    Ok(Trace {
        events,
        marks,
        ..Trace::new(name, demand)
    })
}

pub(crate) fn tabulate(len: u64, mut f: impl FnMut(f64) -> f64) -> Vec<f64> {
    (0..=len).map(|t| f(t as f64)).collect()
}

fn step() -> Vec<f64> {
    tabulate(300 + 1200 + 1200, |t| {
        if (300.0..1500.0).contains(&t) {
            10_000.0
        } else {
            2000.0
        }
    })
}

fn ramp() -> Vec<f64> {
    let (lead, up, hold) = (300.0, 1800.0, 600.0);
    tabulate(300 + 1800 + 600 + 1800 + 300, |t| {
        let x = if t < lead {
            0.0
        } else if t < lead + up {
            (t - lead) / up
        } else if t < lead + up + hold {
            1.0
        } else {
            (1.0 - (t - lead - up - hold) / up).max(0.0)
        };
        1000.0 + 19_000.0 * x
    })
}

fn surge() -> Vec<f64> {
    let top = 120.0 * 50f64.ln();
    tabulate(120 + top.ceil() as u64 + 900, |t| {
        if t < 120.0 {
            1000.0
        } else {
            (1000.0 * ((t - 120.0) / 120.0).exp()).min(50_000.0)
        }
    })
}

/// AR(1) multiplicative noise on 10 s steps, linearly interpolated.
fn diurnal(seed: u64) -> Vec<f64> {
    let period = 7200.0;
    let len = 3 * 7200;
    let mut rng = Rng::new(seed, 0xD1);
    let knots: Vec<f64> = (0..=len / 10 + 1)
        .scan(0.0, |x, _| {
            *x = 0.9 * *x + 0.02 * rng.normal();
            Some(*x)
        })
        .collect();
    tabulate(len, |t| {
        let k = (t / 10.0) as usize;
        let frac = t / 10.0 - k as f64;
        let noise = knots[k] + (knots[k + 1] - knots[k]) * frac;
        let base = 20_000.0 + 15_000.0 * (std::f64::consts::TAU * t / period).sin();
        (base * (1.0 + noise)).max(0.0)
    })
}

fn flash() -> Vec<f64> {
    let (centre, scale) = (600.0, 30.0 / (2.0 * 9f64.ln()));
    let peak_end = centre + 60.0;
    tabulate(3600, |t| {
        let rise = 1.0 / (1.0 + (-(t - centre) / scale).exp());
        let decay = if t > peak_end {
            0.5f64.powf((t - peak_end) / 600.0)
        } else {
            1.0
        };
        5000.0 + 25_000.0 * rise * decay
    })
}

/// Reads `t_seconds,connections` lines (header optional, `#` comments and blank lines
/// ignored), resampled to one point per second from t = 0.
pub fn from_csv(path: &Path) -> Result<Trace, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| Error::TraceLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let mut fields = line.split(',').map(str::trim);
        let (Some(t), Some(c), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad(format!("{line:?} does not have exactly two fields")));
        };
        let (t, c) = match (t.parse::<f64>(), c.parse::<f64>()) {
            (Ok(t), Ok(c)) => (t, c),
            _ if points.is_empty() && t.parse::<f64>().is_err() => continue, // header
            _ => return Err(bad(format!("{line:?} is not two numbers"))),
        };
        if !t.is_finite() || !c.is_finite() || t < 0.0 || c < 0.0 {
            return Err(bad(format!("{line:?}: values must be finite and ≥ 0")));
        }
        if points.last().is_some_and(|&(prev, _)| t <= prev) {
            return Err(bad(format!("time {t} does not increase")));
        }
        points.push((t, c));
    }
    let name = path.display().to_string();
    let Some(&(end, _)) = points.last() else {
        return Err(Error::InvalidTrace {
            name,
            reason: "no data lines".into(),
        });
    };
    let mut j = 0;
    let demand = tabulate(end.ceil() as u64, |t| {
        while j + 1 < points.len() && points[j + 1].0 <= t {
            j += 1;
        }
        match points.get(j + 1) {
            Some(&(t1, c1)) if points[j].0 <= t => {
                let (t0, c0) = points[j];
                c0 + (c1 - c0) * (t - t0) / (t1 - t0)
            }
            _ => points[j].1,
        }
    });
    Ok(Trace::new(name, demand))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_override_changes_only_what_it_names() {
        let mut t = Trace::new("t", vec![1.0; 10]);
        let kill = Event::KillPods {
            at: Duration::from_secs(1),
            pods: 2,
        };
        let deploy = |s, u| Event::RollingDeploy {
            at: Duration::from_secs(5),
            max_surge: s,
            max_unavailable: u,
        };
        t.events = vec![kill, deploy(0.25, 0.25)];
        let t = t.with_rollout(None, Some(0.0));
        assert_eq!(t.events, vec![kill, deploy(0.25, 0.0)]);
        let t = t.with_rollout(Some(0.5), None);
        assert_eq!(t.events, vec![kill, deploy(0.5, 0.0)]);
    }

    #[test]
    fn named_traces_have_their_documented_shape() {
        let s = builtin("step", 1).unwrap();
        assert_eq!(s.at(299.0).0, 2000.0);
        assert_eq!(s.at(300.0).0, 10_000.0);
        assert_eq!(s.duration(), Duration::from_secs(2700));
        let r = builtin("ramp", 1).unwrap();
        assert!((r.at(300.0 + 900.0).0 - 10_500.0).abs() < 1e-6);
        let su = builtin("surge", 1).unwrap();
        assert_eq!(su.demand.iter().cloned().fold(0.0, f64::max), 50_000.0);
        let f = builtin("flash", 1).unwrap();
        let (lo, hi) = (f.at(600.0 - 15.0).0 - 5000.0, f.at(600.0 + 15.0).0 - 5000.0);
        assert!((lo / 25_000.0 - 0.1).abs() < 0.01 && (hi / 25_000.0 - 0.9).abs() < 0.01);
        assert_eq!(builtin("storm", 1).unwrap().events.len(), 2);
        assert!(matches!(
            builtin("nope", 1),
            Err(Error::UnknownTrace { .. })
        ));
    }

    #[test]
    fn the_preroll_mirrors_the_start_and_shifts_the_script() {
        let s = builtin("step", 1).unwrap();
        let pre = s.preroll_secs(Duration::from_secs(1200));
        // The step at 300 s is a mark, and the minute that first holds enough of it to leave
        // the opening level is centred at 272 s.
        assert_eq!(pre, 272, "stops before the step at 300 s");
        let p = s.with_preroll(pre);
        assert_eq!(p.demand.len(), s.demand.len() + 272);
        assert_eq!(p.at(0.0).0, s.at(272.0).0);
        assert_eq!(p.at(272.0).0, s.at(0.0).0);
        assert_eq!(p.marks[0], s.marks[0] + Duration::from_secs(272));
        let storm = builtin("storm", 1).unwrap().with_preroll(100);
        assert_eq!(storm.events[0].at(), Duration::from_secs(700));
    }

    #[test]
    fn the_preroll_stays_within_the_opening_level() {
        // 1,000 for 300 s, then rising 10 per second: the first minute whose mean is 10 %
        // above the first minute's is centred near t = 306, where demand is 1,060.
        let demand: Vec<f64> = (0..3000)
            .map(|t| 1000.0 + 10.0 * (f64::from(t) - 300.0).max(0.0))
            .collect();
        let ramp = Trace::new("ramp-from-300", demand);
        let pre = ramp.preroll_secs(Duration::from_secs(1200));
        assert!((280..=320).contains(&pre), "{pre}");
        let p = ramp.with_preroll(pre);
        assert!(
            p.at(0.0).0 <= 1.1 * 1000.0,
            "starts near D(0): {}",
            p.at(0.0).0
        );
        // A flat load keeps the whole pre-roll; a load at 0 is not cut short either.
        let flat = Trace::new("flat", vec![500.0; 3000]);
        assert_eq!(flat.preroll_secs(Duration::from_secs(1200)), 1200);
        let zero = Trace::new("zero", vec![0.0; 3000]);
        assert_eq!(zero.preroll_secs(Duration::from_secs(1200)), 1200);
    }

    #[test]
    fn diurnal_is_seeded() {
        let a = builtin("diurnal", 1).unwrap();
        assert_eq!(a, builtin("diurnal", 1).unwrap());
        assert_ne!(a, builtin("diurnal", 2).unwrap());
        assert_eq!(a.duration(), Duration::from_secs(21_600));
    }

    #[test]
    fn csv_with_header_is_interpolated_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.csv");
        std::fs::write(&ok, "t_seconds,connections\n0,100\n10,200\n").unwrap();
        let t = from_csv(&ok).unwrap();
        assert_eq!(t.demand.len(), 11);
        assert_eq!(t.at(5.0).0, 150.0);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "0,100\n5,abc\n").unwrap();
        let err = from_csv(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.csv:2"), "{err}");
        std::fs::write(&bad, "0,100\n0,100\n").unwrap();
        assert!(from_csv(&bad).unwrap_err().to_string().contains(":2"));
    }
}
