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

/// A Lease as the API server returns it, held by `holder`.
fn lease_json(holder: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "tidegate", "namespace": "demo", "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    })
}

#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_stops_leadership_at_the_deadline_not_when_the_call_returns() {
    use crate::kube::fixtures::{self, status};
    let config = LeaderElection {
        namespace: "demo".into(),
        lease_name: "tidegate".into(),
        lease_duration: DUR,
        renew_period: RENEW,
        identity: Some("me".into()),
    };
    assert_eq!(config.call_timeout(), Duration::from_millis(2500));
    let registry = prometheus::Registry::new();
    let (service, mut leading) =
        Service::new(config, KubeClientConfig::default(), &registry).unwrap();
    let (client, mut server) = fixtures::client();
    let (stop, shutdown) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, "demo");
    let service = std::sync::Arc::new(service);
    let running = tokio::spawn({
        let service = std::sync::Arc::clone(&service);
        async move { service.run(api, shutdown).await }
    });
    server.answer(404, status(404, "NotFound")).await;
    let create = server.answer(201, lease_json("me", "1")).await;
    assert_eq!(create.method, http::Method::POST);
    let created = Instant::now();
    leading.wait_for(|l| *l).await.unwrap();
    // Every call from now on hangs: the renewal, and each later read.
    let mut held = Vec::new();
    server.answer(200, lease_json("me", "1")).await;
    held.push(server.hold().await); // the PUT of the renewal at +5 s
    let lapsed = tokio::spawn(async move {
        leading.wait_for(|l| !*l).await.unwrap();
        Instant::now()
    });
    for _ in 0..3 {
        held.push(server.hold().await); // reads at +10 s, +15 s, ...
    }
    let lapsed = lapsed.await.unwrap() - created;
    let deadline = DUR - RENEW;
    assert!(
        lapsed <= deadline,
        "leading until {lapsed:?}, past the deadline {deadline:?} after the last renewal"
    );
    assert!(
        lapsed > deadline - RENEW,
        "not before it had to ({lapsed:?})"
    );
    let timeouts = service.errors.with_label_values(&["timeout"]).get();
    assert!(
        timeouts >= 2,
        "each hanging call timed out and was counted ({timeouts})"
    );
    stop.send(true).unwrap();
    drop(held);
    running.abort();
}
