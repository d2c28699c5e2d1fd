//! Helpers for the tests against a real kube-apiserver (`deploy/k8s-tests.sh` starts one and
//! sets `TIDEGATE_TEST_KUBECONFIG`): a namespace per test, Deployments, Pods (they stay
//! Pending: there is no scheduler or kubelet) and EndpointSlices pointing at real local echo
//! backends, and the tidegate services run on the test's own runtime with a shutdown handle.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use tidegate_proxy::config::KubeClientConfig;
use tidegate_proxy::server::{App, Handles};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The admin context of the start script's kubeconfig.
pub const ADMIN: &str = "local";
/// The context whose user (`test-user`, token `user-token`) has no rights until granted.
pub const TEST_USER: &str = "local-test-user";

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("TIDEGATE_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .expect("set TIDEGATE_TEST_KUBECONFIG (deploy/k8s-tests.sh does)")
}

pub fn source(context: &str) -> KubeClientConfig {
    KubeClientConfig {
        kubeconfig: Some(kubeconfig()),
        context: Some(context.to_owned()),
    }
}

pub async fn client(context: &str) -> Client {
    tidegate_proxy::tls::install_provider();
    let file = Kubeconfig::read_from(kubeconfig()).unwrap();
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Creates a fresh namespace `tg-<prefix>-<random>` and returns its name.
pub async fn namespace(admin: &Client, prefix: &str) -> String {
    let name = format!("tg-{prefix}-{:08x}", fastrand::u32(..));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

pub async fn create_deployment(admin: &Client, ns: &str, name: &str, replicas: i32) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "echo", "image": "tidegate"}]}}
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

pub async fn replicas(admin: &Client, ns: &str, name: &str) -> i32 {
    let d = Api::<Deployment>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .unwrap();
    d.spec.unwrap().replicas.unwrap()
}

pub async fn annotate_deployment(
    admin: &Client,
    ns: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    Api::<Deployment>::namespaced(admin.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

pub async fn create_pod(admin: &Client, ns: &str, name: &str, app: &str) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "echo", "image": "tidegate"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

pub async fn pod_annotation(admin: &Client, ns: &str, pod: &str, key: &str) -> Option<String> {
    let p = Api::<Pod>::namespaced(admin.clone(), ns)
        .get(pod)
        .await
        .unwrap();
    p.metadata.annotations.and_then(|a| a.get(key).cloned())
}

/// The conditions of one endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Conditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

pub const READY: Conditions = Conditions {
    ready: true,
    serving: true,
    terminating: false,
};
pub const TERMINATING: Conditions = Conditions {
    ready: false,
    serving: true,
    terminating: true,
};
pub const NOT_SERVING: Conditions = Conditions {
    ready: false,
    serving: false,
    terminating: false,
};

/// An EndpointSlice of Service `service` with one endpoint: `addr` (port named `ws`), pod `pod`.
pub fn slice(
    service: &str,
    name: &str,
    addr: SocketAddr,
    pod: &str,
    c: Conditions,
) -> EndpointSlice {
    named_port_slice(service, name, addr, pod, c, "ws")
}

/// An EndpointSlice of Service `service` with one endpoint `addr` on the port named `port`.
pub fn named_port_slice(
    service: &str,
    name: &str,
    addr: SocketAddr,
    pod: &str,
    c: Conditions,
    port: &str,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port, "port": addr.port(), "protocol": "TCP"}],
        "endpoints": [{
            "addresses": [addr.ip().to_string()],
            "conditions": {"ready": c.ready, "serving": c.serving, "terminating": c.terminating},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "ignored"},
        }],
    }))
    .unwrap()
}

/// Creates or replaces a slice.
pub async fn put_slice(admin: &Client, ns: &str, s: EndpointSlice) {
    let api = Api::<EndpointSlice>::namespaced(admin.clone(), ns);
    let name = s.metadata.name.clone().unwrap();
    match api.get_opt(&name).await.unwrap() {
        None => drop(api.create(&PostParams::default(), &s).await.unwrap()),
        Some(old) => {
            let mut s = s;
            s.metadata.resource_version = old.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &s)
                .await
                .unwrap();
        }
    }
}

pub async fn delete_slice(admin: &Client, ns: &str, name: &str) {
    Api::<EndpointSlice>::namespaced(admin.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// tidegate's Kubernetes services running on the test's runtime.
pub struct Running {
    pub handles: Handles,
    /// Where the traffic listener accepts (when the `traffic` component runs).
    pub traffic_addr: SocketAddr,
    /// Its admin listener (serving only if the `admin` component runs).
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Builds the services of `config` and runs those whose names are in `only` (all if empty).
    pub fn start(config: tidegate_proxy::config::Config, only: &[&str]) -> Running {
        assert!(
            config.backends.kubernetes.is_some(),
            "backends.kubernetes is set"
        );
        let mut app = App::build(config).unwrap();
        let components = std::mem::take(&mut app.components);
        let (stop, rx) = watch::channel(false);
        let tasks = components
            .into_iter()
            .filter(|c| only.is_empty() || only.contains(&c.name))
            .map(|c| {
                let rx = rx.clone();
                tokio::spawn(async move { c.service.start(rx).await })
            })
            .collect();
        Running {
            handles: app.handles,
            traffic_addr: app.traffic_addr,
            admin_addr: app.admin_addr,
            stop,
            tasks,
        }
    }

    pub fn target(&self) -> &Arc<tidegate_proxy::target::deployment::Target> {
        self.handles
            .deployment
            .as_ref()
            .expect("scaler.deployment is set")
    }

    pub fn leading(&self) -> bool {
        self.handles.leading.as_ref().is_some_and(|l| *l.borrow())
    }

    pub fn table(&self) -> &Arc<tidegate_common::BackendTable> {
        &self.handles.proxy.table
    }

    /// The value of one series in this instance's metrics (absent: never counted).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = tidegate_proxy::metrics::render(&self.handles.admin.registry);
        crate::support::sample(&text, series)
    }

    /// Graceful stop: the services see shutdown (a leader releases its Lease).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// A crash: the tasks are dropped where they stand (no release, no goodbye).
    pub fn kill(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A copy of the test kubeconfig whose server is `via` instead (a [`Blackhole`] in front of
/// the apiserver); returns its path, kept in `dir`.
pub fn kubeconfig_via(dir: &std::path::Path, via: SocketAddr) -> PathBuf {
    let mut k = Kubeconfig::read_from(kubeconfig()).unwrap();
    for c in &mut k.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://{via}"));
        }
    }
    let path = dir.join("kubeconfig-via");
    std::fs::write(&path, serde_json::to_vec(&k).unwrap()).unwrap();
    path
}

/// The apiserver's address, from the test kubeconfig.
pub fn apiserver() -> SocketAddr {
    let k = Kubeconfig::read_from(kubeconfig()).unwrap();
    let server = k.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    server.trim_start_matches("https://").parse().unwrap()
}

/// A TCP relay on 127.0.0.1 in front of `upstream` that can be frozen: while frozen nothing
/// crosses it either way and nothing is closed — a network that stops answering, as the one
/// under a hanging API call.
pub struct Blackhole {
    pub addr: SocketAddr,
    frozen: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Blackhole {
    pub async fn start(upstream: SocketAddr) -> Blackhole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, _) = watch::channel(false);
        let gate = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(relay(cr, sw, gate.subscribe()));
                tokio::spawn(relay(sr, cw, gate.subscribe()));
            }
        });
        Blackhole { addr, frozen, task }
    }

    pub fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding every read back while frozen.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
