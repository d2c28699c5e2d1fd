//! The thin loop around [`Elector`]: read the Lease, step, write, publish — every
//! `renew_period`, and also at the moment leadership would lapse. On shutdown a holder releases
//! the Lease so that a follower takes over at once.

use super::*;

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
        let current = api
            .get_opt(name)
            .await
            .map_err(|e| Error::from_kube("get lease", e))?;
        let now = Instant::now();
        let action = elector.step(now, current.as_ref().map(observe).as_ref());
        let duration = self.config.lease_duration;
        let lease = desired_lease(action, elector.identity(), name, duration, current);
        let pp = PostParams::default();
        match action {
            Action::Follow => return Ok(()),
            Action::Create => api.create(&pp, &lease).await.map(drop),
            Action::Renew | Action::TakeOver => api.replace(name, &pp, &lease).await.map(drop),
        }
        .map_err(|e| Error::from_kube("write lease", e))?;
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
        let Ok(Some(mut lease)) = api.get_opt(name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(elector.identity()) {
            return;
        }
        spec.holder_identity = None;
        match api.replace(name, &PostParams::default(), &lease).await {
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
            if Instant::now() >= next_round {
                next_round = Instant::now() + period;
                match self.round(&api, &mut elector).await {
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
}
