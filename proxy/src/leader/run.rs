//! The thin loop around [`Elector`]: read the Lease, step, write, publish — every
//! `renew_period`, and also at the moment leadership would lapse. On shutdown a holder releases
//! the Lease so that a follower takes over at once.
//!
//! Every call has `leader_election.call_timeout()` (half of the shorter of the renew period and
//! the renew deadline), and a round in progress does not hold leadership up: at the elector's
//! deadline `leading` turns false whatever the round is doing, so a hanging API call can never
//! leave two leaders.

use super::*;
use crate::kube::within;

impl Service {
    fn count(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    fn publish(&self, leading: bool) {
        let changed = self
            .leading
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
        if changed {
            info!(leading, lease = %self.config.lease_name, "leadership changed");
        }
    }

    /// One round: read, step, write. Errors are counted and leave the elector as it was.
    async fn round(&self, api: &Api<Lease>, elector: &mut Elector) -> Result<(), Error> {
        let name = &self.config.lease_name;
        let limit = self.config.call_timeout();
        let current = within(limit, "get lease", api.get_opt(name)).await?;
        let now = Instant::now();
        let action = elector.step(now, current.as_ref().map(observe).as_ref());
        let duration = self.config.lease_duration;
        let lease = desired_lease(action, elector.identity(), name, duration, current);
        let pp = PostParams::default();
        match action {
            Action::Follow => return Ok(()),
            Action::Create => within(limit, "write lease", api.create(&pp, &lease))
                .await
                .map(drop),
            Action::Renew | Action::TakeOver => {
                within(limit, "write lease", api.replace(name, &pp, &lease))
                    .await
                    .map(drop)
            }
        }?;
        if action == Action::TakeOver || action == Action::Create {
            info!(identity = elector.identity(), lease = %name, "acquired the lease");
        }
        elector.wrote(now);
        Ok(())
    }

    /// Gives the Lease up if we still hold it (best effort, on shutdown).
    async fn release(&self, api: &Api<Lease>, elector: &mut Elector) {
        if !elector.leading(Instant::now()) {
            return;
        }
        elector.released();
        self.publish(false);
        let name = &self.config.lease_name;
        let limit = self.config.call_timeout();
        let Ok(Some(mut lease)) = within(limit, "get lease", api.get_opt(name)).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(elector.identity()) {
            return;
        }
        spec.holder_identity = None;
        let pp = PostParams::default();
        match within(limit, "release lease", api.replace(name, &pp, &lease)).await {
            Ok(_) => info!(lease = %name, "released the lease"),
            Err(e) => warn!(error = %e, "cannot release the lease"),
        }
    }
}

#[async_trait]
impl BackgroundService for Service {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.publish(false);
        let count = |e: &Error| self.count(e);
        let Some(client) = crate::kube::connect(&self.client, &mut shutdown, count).await else {
            return;
        };
        let api: Api<Lease> = Api::namespaced(client, &self.config.namespace);
        self.run(api, shutdown).await;
    }
}

impl Service {
    /// Runs for leader with `api` until shutdown, then releases the Lease if held.
    pub async fn run(&self, api: Api<Lease>, mut shutdown: ShutdownWatch) {
        self.publish(false);
        let identity = self.config.resolved_identity();
        info!(%identity, lease = %self.config.lease_name, "running for leader");
        let (duration, period) = (self.config.lease_duration, self.config.renew_period);
        let mut elector = Elector::new(identity, duration, period);
        let mut next_round = Instant::now();
        loop {
            let wake = match elector.deadline() {
                Some(d) if d > Instant::now() => d.min(next_round),
                _ => next_round,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => break,
            }
            // Lapse first: a round about to start must not find us still leading past the
            // deadline.
            self.publish(elector.leading(Instant::now()));
            if Instant::now() >= next_round {
                next_round = Instant::now() + period;
                match self.round_on_time(&api, &mut elector).await {
                    // Another candidate wrote first: not an error, it leads now.
                    Err(e) if e.code() == Some(409) => debug!("lost a race for the lease"),
                    Err(e) => {
                        warn!(error = %e, "lease round failed");
                        self.count(&e);
                    }
                    Ok(()) => {}
                }
            }
            self.publish(elector.leading(Instant::now()));
        }
        self.release(&api, &mut elector).await;
    }

    /// A round, during which leadership still lapses at the elector's deadline.
    async fn round_on_time(&self, api: &Api<Lease>, elector: &mut Elector) -> Result<(), Error> {
        let lapse = elector.deadline().filter(|d| *d > Instant::now());
        let round = self.round(api, elector);
        tokio::pin!(round);
        let Some(lapse) = lapse else {
            return round.await;
        };
        tokio::select! {
            r = &mut round => r,
            _ = tokio::time::sleep_until(lapse) => {
                warn!(lease = %self.config.lease_name, "lease not renewed in time: no longer leading");
                self.publish(false);
                round.await
            }
        }
    }
}
