//! The loop around the policy, on paused time with a scripted policy: a fresh replica lowers
//! nothing before one scale-down window, and a follower that takes over sees this second's
//! refusals, not everything refused while it followed.

use std::sync::atomic::{AtomicU64, Ordering};

use tidegate_scaler::policy::{PodObservation, Reason};

use super::*;

/// Demand whose refusal total the test moves.
#[derive(Default)]
struct Refusals(AtomicU64);

impl Demand for Refusals {
    fn load(&self) -> LoadSnapshot {
        LoadSnapshot::default()
    }
    fn refused_total(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Two ready pods; records what it is told.
#[derive(Default)]
struct Pods {
    told: Mutex<Vec<u32>>,
}

impl ScaleTarget for Pods {
    fn pods(&self, _: &LoadSnapshot) -> Vec<PodObservation> {
        vec![PodObservation::ready(1, 0), PodObservation::ready(2, 0)]
    }
    fn desired(&self) -> u32 {
        2
    }
    fn set_desired(&self, replicas: u32, _serving: u32) {
        self.told.lock().unwrap().push(replicas);
    }
}

/// Always asks for one replica; records the refusals it observes.
struct OneReplica(Arc<Mutex<Vec<u32>>>);

impl Policy for OneReplica {
    fn name(&self) -> &str {
        "one"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn observe(&mut self, _: Duration, obs: &Observation<'_>) {
        self.0.lock().unwrap().push(obs.refused);
    }
    fn decide(&mut self, _: Duration, _: &Observation<'_>) -> Decision {
        let mut reason = Reason::hold(2, "");
        reason.action = Action::ScaleDown;
        Decision {
            replicas: 1,
            serving: None,
            reason,
            forecast: None,
        }
    }
}

/// The refusals the policy observed, tick by tick.
type Seen = Arc<Mutex<Vec<u32>>>;

fn scaler(leading: watch::Receiver<bool>) -> (Scaler, Arc<Pods>, Arc<Refusals>, Seen) {
    let registry = prometheus::Registry::new();
    let status = Arc::new(Status::new(&registry, Some(leading.clone())).unwrap());
    let (pods, refusals) = (Arc::new(Pods::default()), Arc::new(Refusals::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Scaler::new(
        Arc::clone(&pods) as Arc<dyn ScaleTarget>,
        Box::new(OneReplica(Arc::clone(&seen))),
        Arc::clone(&refusals) as Arc<dyn Demand>,
        status,
        Duration::from_secs(20),
    )
    .with_leadership(leading);
    (s, pods, refusals, seen)
}

#[tokio::test(start_paused = true)]
async fn a_fresh_leader_lowers_nothing_before_one_scale_down_window() {
    let (_tx, leading) = watch::channel(true);
    let (s, pods, _, _) = scaler(leading);
    let (stop, shutdown) = watch::channel(false);
    let t0 = tokio::time::Instant::now();
    let run = tokio::spawn(async move { s.start(shutdown).await });
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert!(
        pods.told.lock().unwrap().is_empty(),
        "held while warming up"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let told = pods.told.lock().unwrap().clone();
    assert_eq!(told.last(), Some(&1), "{told:?}");
    assert!(tokio::time::Instant::now() - t0 >= Duration::from_secs(20));
    stop.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_follower_that_takes_over_sees_this_seconds_refusals_not_a_burst() {
    let (tx, leading) = watch::channel(false);
    let (s, _, refusals, seen) = scaler(leading);
    let (stop, shutdown) = watch::channel(false);
    let run = tokio::spawn(async move { s.start(shutdown).await });
    // 30 s as a follower, 40 refusals a second somewhere in the cluster.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        refusals.0.fetch_add(40, Ordering::SeqCst);
    }
    tx.send_replace(true);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        refusals.0.fetch_add(40, Ordering::SeqCst);
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 30, "observed while following too: {seen:?}");
    assert!(seen.iter().all(|&r| r <= 40), "never a burst: {seen:?}");
    stop.send(true).unwrap();
    run.await.unwrap();
}
