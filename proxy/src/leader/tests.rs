//! The Lease state machine, table-tested with time passed in.

use super::*;

/// (seconds, lease seen, write accepted).
type Script = Vec<(u64, Option<Observed>, bool)>;
/// A named script and the (action, leading) expected after each step.
type Case = (&'static str, Script, Vec<(Action, bool)>);

const DUR: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(5);

fn lease(holder: &str, version: &str) -> Observed {
    Observed {
        holder: Some(holder.to_owned()).filter(|h| !h.is_empty()),
        version: version.to_owned(),
        duration: Some(DUR),
    }
}

/// Runs a script of (seconds, lease seen, write accepted) and returns each step's action
/// and whether we lead right after.
fn run(script: &[(u64, Option<Observed>, bool)]) -> Vec<(Action, bool)> {
    let t0 = Instant::now();
    let mut e = Elector::new("me".into(), DUR, RENEW);
    script
        .iter()
        .map(|(s, seen, accepted)| {
            let now = t0 + Duration::from_secs(*s);
            let action = e.step(now, seen.as_ref());
            if *accepted && action != Action::Follow {
                e.wrote(now);
            }
            (action, e.leading(now))
        })
        .collect()
}

#[test]
fn the_lease_state_machine() {
    use Action::*;
    let cases: &[Case] = &[
        (
            "no lease: create it and lead",
            vec![(0, None, true), (5, Some(lease("me", "1")), true)],
            vec![(Create, true), (Renew, true)],
        ),
        (
            "a renewing holder is followed forever",
            vec![
                (0, Some(lease("a", "1")), false),
                (10, Some(lease("a", "2")), false),
                (20, Some(lease("a", "3")), false),
                (30, Some(lease("a", "4")), false),
            ],
            vec![(Follow, false); 4],
        ),
        (
            "a silent holder is taken over one lease duration after we first saw it",
            vec![
                (0, Some(lease("a", "1")), false),
                (14, Some(lease("a", "1")), false),
                (15, Some(lease("a", "1")), true),
            ],
            vec![(Follow, false), (Follow, false), (TakeOver, true)],
        ),
        (
            "a released lease is taken at once",
            vec![(0, Some(lease("", "7")), true)],
            vec![(TakeOver, true)],
        ),
        (
            "losing a race (409) leaves us following",
            vec![
                (0, Some(lease("", "7")), false),
                (5, Some(lease("b", "8")), false),
            ],
            vec![(TakeOver, false), (Follow, false)],
        ),
        (
            "a holder that sees another name steps down at once",
            vec![(0, None, true), (5, Some(lease("b", "9")), false)],
            vec![(Create, true), (Follow, false)],
        ),
        (
            "a holder that cannot renew stops leading before anyone may take over",
            vec![
                (0, None, true),
                (5, Some(lease("me", "2")), false),
                (9, Some(lease("me", "2")), false),
                (10, Some(lease("me", "2")), false),
            ],
            vec![(Create, true), (Renew, true), (Renew, true), (Renew, false)],
        ),
    ];
    for (name, script, want) in cases {
        assert_eq!(&run(script), want, "{name}");
    }
}

#[test]
fn takeover_counts_a_transition_and_renewal_keeps_the_acquire_time() {
    let created = desired_lease(Action::Create, "a", "tg", DUR, None);
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(
        (spec.lease_transitions, spec.lease_duration_seconds),
        (Some(0), Some(15))
    );
    let taken = desired_lease(Action::TakeOver, "b", "tg", DUR, Some(created.clone()));
    let t = taken.spec.unwrap();
    assert_eq!(
        (t.holder_identity.as_deref(), t.lease_transitions),
        (Some("b"), Some(1))
    );
    let renewed = desired_lease(Action::Renew, "a", "tg", DUR, Some(created));
    assert_eq!(renewed.spec.unwrap().acquire_time, spec.acquire_time);
}
