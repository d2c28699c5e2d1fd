//! Which scenarios run, and how long: the full run (`--minutes`, default 10) or the short CI
//! form (`--ci`). Each scenario derives its own sizes from the plan.

use std::time::Duration;

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Name {
    /// 1: idle WebSockets held with a message every 10 s.
    Hold,
    /// 2: backends SIGKILLed under a reconnecting load.
    Kills,
    /// 3: a backend whose packets are dropped.
    Blackhole,
    /// 4: config reloads under load.
    Reloads,
    /// 5: request heads sent a byte a second.
    Slowloris,
    /// 6: the proxy out of file descriptors.
    Descriptors,
    /// 7: the kube-apiserver stopped under load.
    Outage,
    /// 8: one of two edges killed and restarted.
    Edges,
}

impl Name {
    /// Every scenario, in order.
    pub const ALL: [Name; 8] = [
        Name::Hold,
        Name::Kills,
        Name::Blackhole,
        Name::Reloads,
        Name::Slowloris,
        Name::Descriptors,
        Name::Outage,
        Name::Edges,
    ];

    /// The name on the command line (`--only hold,kills`).
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Hold => "hold",
            Name::Kills => "kills",
            Name::Blackhole => "blackhole",
            Name::Reloads => "reloads",
            Name::Slowloris => "slowloris",
            Name::Descriptors => "descriptors",
            Name::Outage => "outage",
            Name::Edges => "edges",
        }
    }

    /// The report's title: number and name.
    pub fn title(self) -> String {
        let n = Name::ALL.iter().position(|&x| x == self).unwrap_or(0) + 1;
        format!("{n} {}", self.as_str())
    }

    /// Parses a command-line name.
    pub fn parse(text: &str) -> Result<Name, String> {
        Name::ALL
            .into_iter()
            .find(|n| n.as_str() == text)
            .ok_or_else(|| {
                let all: Vec<_> = Name::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown scenario {text:?}; expected one of {}",
                    all.join(", ")
                )
            })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The short CI form: smaller counts, shorter holds.
    pub ci: bool,
    /// Length of the timed scenarios (hold, kills, edges).
    pub minutes: f64,
    /// The scenarios to run, in order.
    pub only: Vec<Name>,
}

impl Plan {
    /// The full run (`minutes` long timed scenarios) or, with `ci`, the short one (1 minute).
    pub fn new(ci: bool, minutes: Option<f64>, only: Vec<Name>) -> Plan {
        let default = if ci { 1.0 } else { 10.0 };
        let mut only = if only.is_empty() {
            Name::ALL.to_vec()
        } else {
            only
        };
        only.sort();
        only.dedup();
        Plan {
            ci,
            minutes: minutes.unwrap_or(default).max(0.1),
            only,
        }
    }

    /// The timed scenarios' length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0)
    }

    /// `full` in a full run, `ci` in the CI form.
    pub fn pick<T>(&self, full: T, ci: T) -> T {
        if self.ci { ci } else { full }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_plans_default_by_form() {
        for n in Name::ALL {
            assert_eq!(Name::parse(n.as_str()), Ok(n));
        }
        assert!(Name::parse("nope").is_err());
        assert_eq!(Name::Outage.title(), "7 outage");
        let full = Plan::new(false, None, vec![]);
        assert_eq!((full.minutes, full.only.len()), (10.0, 8));
        let ci = Plan::new(true, None, vec![Name::Kills, Name::Hold, Name::Kills]);
        assert_eq!(
            (ci.minutes, ci.only.clone()),
            (1.0, vec![Name::Hold, Name::Kills])
        );
        assert_eq!(ci.pick(9900, 2000), 2000);
    }
}
