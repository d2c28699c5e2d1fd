//! Kubernetes mode against a real kube-apiserver (etcd + apiserver, no controllers, no kubelet):
//! `deploy/k8s-tests.sh` builds and starts one and runs these with `--ignored`. Deployments get
//! no pods by themselves, so the tests create Pod objects (they stay Pending) and
//! EndpointSlices pointing at real echo backends on 127.0.0.1.
//!
//! One test here needs no apiserver: the shipped deploy/ config must be valid.

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/kube.rs"]
mod kube_support;
mod support;

#[path = "kube_api/discovery.rs"]
mod discovery;
#[path = "kube_api/lease.rs"]
mod lease;
#[path = "kube_api/peers.rs"]
mod peers;
#[path = "kube_api/rbac.rs"]
mod rbac;
#[path = "kube_api/scaling.rs"]
mod scaling;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use kube_support::*;
use support::wait_until;
use tidegate_common::BackendState;
use tidegate_proxy::config::{
    Config, DeploymentRef, KubernetesBackends, LeaderElection, PortRef, ScalerSection,
};

/// A port-0 config discovering Service `echo` in `ns` with credentials of `context`.
fn config(ns: &str, context: &str, scaler: bool) -> Config {
    let mut c = support::config(&[], 10);
    c.backends.kubernetes = Some(KubernetesBackends {
        drain_grace: None,
        namespace: ns.into(),
        service: "echo".into(),
        port: PortRef::Name("ws".into()),
    });
    c.kube_client = Some(source(context));
    if scaler {
        c.scaler = Some(ScalerSection {
            min_replicas: 1,
            max_replicas: 6,
            deployment: Some(DeploymentRef {
                namespace: ns.into(),
                name: "echo".into(),
            }),
            ..ScalerSection::default()
        });
    }
    c.validate().unwrap();
    c
}

fn with_lease(mut c: Config, ns: &str, identity: &str) -> Config {
    c.leader_election = Some(LeaderElection {
        namespace: ns.into(),
        lease_name: "tidegate".into(),
        lease_duration: Duration::from_secs(3),
        renew_period: Duration::from_secs(1),
        identity: Some(identity.into()),
    });
    c.validate().unwrap();
    c
}

fn state_of(table: &tidegate_common::BackendTable, addr: SocketAddr) -> Option<BackendState> {
    table.get(addr).map(|b| b.state())
}

/// Waits until `addr` is in `want` state and returns how long that took.
async fn time_until(
    table: &tidegate_common::BackendTable,
    addr: SocketAddr,
    want: Option<BackendState>,
) -> Duration {
    let t0 = Instant::now();
    wait_until(&format!("{addr} becomes {want:?}"), || async {
        state_of(table, addr) == want
    })
    .await;
    t0.elapsed()
}

async fn scaled_events(admin: &kube::Client, ns: &str) -> Vec<String> {
    events(admin, ns, "Scaled").await
}

/// The messages of the Events with `reason` on Deployment `echo`.
async fn events(admin: &kube::Client, ns: &str, reason: &str) -> Vec<String> {
    let events = Api::<Event>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some("echo")
        })
        .filter_map(|e| e.message)
        .collect()
}

#[test]
fn the_shipped_deploy_config_is_valid_and_its_grace_budget_adds_up() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
    let cm: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("configmap.yaml")).unwrap())
            .unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let c = tidegate_proxy::config::parse(text, "deploy/base/configmap.yaml").unwrap();
    assert_eq!(c.backends.kubernetes.as_ref().unwrap().service, "echo");
    assert!(c.scaler.as_ref().unwrap().deployment.is_some() && c.leader_election.is_some());
    let d: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("deployment.yaml")).unwrap())
            .unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let tgps = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        pod["containers"][0]["lifecycle"]["preStop"].is_null(),
        "no preStop sleep: shutdown_delay does its job, and a sleep would add to the budget"
    );
    let budget = (c.shutdown_delay + c.grace_period + c.shutdown_timeout).as_secs_f64();
    assert!(
        tgps as f64 > budget,
        "terminationGracePeriodSeconds {tgps} must exceed {budget}"
    );
}

#[test]
fn the_shipped_ha_config_is_the_base_config_with_peers_and_is_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let config_of = |file: &str| -> String {
        let cm: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(deploy.join(file)).unwrap()).unwrap();
        cm["data"]["config.yaml"].as_str().unwrap().to_owned()
    };
    let (base, ha) = (
        config_of("base/configmap.yaml"),
        config_of("overlays/ha/configmap.yaml"),
    );
    let c = tidegate_proxy::config::parse(&ha, "deploy/overlays/ha/configmap.yaml").unwrap();
    let peers = c.peers.clone().expect("the HA config has a peers section");
    let k = peers
        .kubernetes
        .expect("found through the headless Service");
    assert_eq!(
        (k.namespace.as_str(), k.service.as_str()),
        ("demo", "tidegate-peers")
    );
    assert_eq!(k.port, PortRef::Name("admin".into()));
    // Nothing else differs from the base: the overlay does not fork the config.
    let base = tidegate_proxy::config::parse(&base, "deploy/base/configmap.yaml").unwrap();
    assert_eq!(
        Config {
            peers: None,
            ..c.clone()
        },
        base
    );
    // The Service it names exists in the overlay, on the admin port of the proxy pods.
    let svc: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(deploy.join("overlays/ha/peers-service.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(svc["metadata"]["name"], "tidegate-peers");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["ports"][0]["name"], "admin");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
}
