//! Following one Service's EndpointSlices (label `kubernetes.io/service-name`): the watch that
//! backend discovery (`crate::discovery::kube`) and peer discovery (`crate::peers::contacts`)
//! both run, each folding the slices its own way.

use std::sync::Arc;

use ::kube::runtime::reflector;
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Api, Client};
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pingora::server::ShutdownWatch;
use tracing::info;

use super::Error;

/// Watches the EndpointSlices of Service `service` in `namespace` with `client` until
/// `shutdown` (or the watch stream ends), through kube-runtime's reflector with its default
/// backoff. `changed` gets every slice held after each change, and once the first list is in;
/// `failed` gets each watch error (the watch retries by itself: the caller keeps what it had).
pub async fn follow_slices(
    client: Client,
    namespace: &str,
    service: &str,
    shutdown: &mut ShutdownWatch,
    mut changed: impl FnMut(&[Arc<EndpointSlice>]),
    mut failed: impl FnMut(Error),
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let labels = format!("kubernetes.io/service-name={service}");
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(&labels))
        .default_backoff()
        .reflect(writer);
    let mut stream = std::pin::pin!(stream);
    info!(%namespace, %service, "watching EndpointSlices");
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Some(Ok(
                watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
            )) => changed(&store.state()),
            Some(Ok(_)) => {}
            Some(Err(e)) => failed(Error::Watch(e)),
            None => break,
        }
    }
}
