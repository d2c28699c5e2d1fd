//! Connection-count profiles: the built-in shapes, and CSV traces in the simulator's format
//! (`t_seconds,connections`, header optional).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a built-in name nor a `.csv` file.
    #[error("unknown profile {0:?}: expected ramp, surge, storm, none or a .csv file")]
    Unknown(String),
    /// The trace file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the trace is not `t_seconds,connections` with increasing times.
    #[error("{path}: line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The trace has no data lines.
    #[error("{0}: no data lines")]
    Empty(PathBuf),
}

/// How many connections the population wants at each moment of a pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Profile {
    /// Up to `peak` over 40% of the pass, hold to 60%, back down to 10% of peak.
    Ramp {
        /// Most connections.
        peak: u64,
    },
    /// 10% of `peak`, then exponential growth to `peak` between 20% and 45% of the pass, hold
    /// to 75%, then back to 10%.
    Surge {
        /// Most connections.
        peak: u64,
    },
    /// Steady at 60% of `peak`; the driver drops every connection at 40% and 70% of the pass
    /// (as when an edge restarts) and the clients reconnect with jitter.
    Storm {
        /// Scale of the profile.
        peak: u64,
    },
    /// A trace: `(seconds, connections)` points, linear in between, scaled to the pass.
    Trace(Vec<(f64, u64)>),
    /// No load.
    None,
}

impl Profile {
    /// A built-in profile by name (`ramp`, `surge`, `storm`, `none`) or a CSV file path.
    pub fn parse(spec: &str, peak: u64) -> Result<Profile, Error> {
        match spec {
            "ramp" => Ok(Profile::Ramp { peak }),
            "surge" => Ok(Profile::Surge { peak }),
            "storm" => Ok(Profile::Storm { peak }),
            "none" => Ok(Profile::None),
            path if path.ends_with(".csv") => read_csv(Path::new(path)).map(Profile::Trace),
            other => Err(Error::Unknown(other.to_owned())),
        }
    }

    /// Target connections at `t` into the run; the profile repeats every `period`.
    pub fn target(&self, t: Duration, period: Duration) -> u64 {
        let x = (t.as_secs_f64() / period.as_secs_f64().max(1e-3)).fract();
        let scaled = |peak: u64, f: f64| (peak as f64 * f.clamp(0.0, 1.0)).round() as u64;
        match self {
            Profile::Ramp { peak } => scaled(*peak, ramp(x)),
            Profile::Surge { peak } => scaled(*peak, surge(x)),
            Profile::Storm { peak } => scaled(*peak, 0.6),
            Profile::Trace(points) => trace_at(points, x * points.last().map_or(0.0, |p| p.0)),
            Profile::None => 0,
        }
    }

    /// Whether a reconnect storm (every connection dropped) falls in `(from, to]`.
    pub fn storm_between(&self, from: Duration, to: Duration, period: Duration) -> bool {
        if !matches!(self, Profile::Storm { .. }) {
            return false;
        }
        let p = period.as_secs_f64();
        let (a, b) = (from.as_secs_f64() / p, to.as_secs_f64() / p);
        [0.4, 0.7].iter().any(|m| {
            let k = a.floor();
            (a < k + m && k + m <= b) || (a < k + 1.0 + m && k + 1.0 + m <= b)
        })
    }
}

fn ramp(x: f64) -> f64 {
    match x {
        x if x < 0.4 => x / 0.4,
        x if x < 0.6 => 1.0,
        x => 1.0 - 0.9 * (x - 0.6) / 0.4,
    }
}

fn surge(x: f64) -> f64 {
    let growth = (10f64).ln() / 0.25; // ×10 between 20% and 45%
    match x {
        x if x < 0.2 => 0.1,
        x if x < 0.45 => 0.1 * (growth * (x - 0.2)).exp(),
        x if x < 0.75 => 1.0,
        _ => 0.1,
    }
}

fn trace_at(points: &[(f64, u64)], t: f64) -> u64 {
    let Some(i) = points.iter().position(|p| p.0 >= t) else {
        return points.last().map_or(0, |p| p.1);
    };
    if i == 0 {
        return points[0].1;
    }
    let ((t0, c0), (t1, c1)) = (points[i - 1], points[i]);
    let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
    (c0 as f64 + f * (c1 as f64 - c0 as f64)).round() as u64
}

/// Reads `t_seconds,connections` lines; the first line may be a header.
pub fn read_csv(path: &Path) -> Result<Vec<(f64, u64)>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with(|c: char| c.is_ascii_alphabetic())) {
            continue;
        }
        let problem = |problem: String| Error::Line {
            path: path.to_owned(),
            line: n + 1,
            problem,
        };
        let bad = || problem(format!("expected t_seconds,connections, got {line:?}"));
        let (t, c) = line.split_once(',').ok_or_else(bad)?;
        let t: f64 = t.trim().parse().map_err(|_| bad())?;
        let c: u64 = c.trim().parse().map_err(|_| bad())?;
        if points.last().is_some_and(|&(last, _)| t < last) || !t.is_finite() {
            return Err(problem("times must increase".into()));
        }
        points.push((t, c));
    }
    if points.is_empty() {
        return Err(Error::Empty(path.to_owned()));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(100);

    #[test]
    fn built_in_shapes() {
        let ramp = Profile::Ramp { peak: 1000 };
        assert_eq!(ramp.target(Duration::from_secs(20), P), 500);
        assert_eq!(ramp.target(Duration::from_secs(50), P), 1000);
        assert_eq!(
            ramp.target(Duration::from_secs(199), P),
            ramp.target(Duration::from_secs(99), P)
        );
        let surge = Profile::Surge { peak: 1000 };
        assert_eq!(surge.target(Duration::from_secs(10), P), 100);
        assert!(
            surge.target(Duration::from_secs(30), P) < surge.target(Duration::from_secs(40), P)
        );
        assert_eq!(surge.target(Duration::from_secs(60), P), 1000);
        let storm = Profile::Storm { peak: 1000 };
        assert!(storm.storm_between(Duration::from_secs(39), Duration::from_secs(41), P));
        assert!(!storm.storm_between(Duration::from_secs(41), Duration::from_secs(69), P));
        assert!(storm.storm_between(Duration::from_secs(169), Duration::from_secs(171), P));
    }

    #[test]
    fn csv_traces_interpolate_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "t_seconds,connections\n0,0\n10,100\n20,100\n").unwrap();
        let p = Profile::parse(good.to_str().unwrap(), 0).unwrap();
        assert_eq!(
            p.target(Duration::from_secs(5), Duration::from_secs(20)),
            50
        );
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "0,0\n10;100\n").unwrap();
        let err = Profile::parse(bad.to_str().unwrap(), 0).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(Profile::parse("sawtooth", 0).is_err());
    }
}
