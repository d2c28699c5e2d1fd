//! The kube-apiserver tier: a throw-away etcd + kube-apiserver on 127.0.0.1, built and started
//! by `build-kube-apiserver.sh` / `start-kube-apiserver.sh` (`../shared/k8s`, as
//! `deploy/k8s-tests.sh` uses them), with a state directory in the work directory. The two
//! processes are not the suite's children (the start script backgrounds them), so the guard
//! stops them by the PIDs the script wrote — after checking each PID still runs a command line
//! that names this state directory — when it is dropped: SIGCONT (they may be stopped), SIGTERM,
//! then SIGKILL after 5 s.
//!
//! Also the objects the outage scenario needs: a namespace, a Deployment, EndpointSlices
//! pointing at local echo backends (the 1.20 apiserver serves EndpointSlice v1 through the
//! start script's CRD shim, which accepts 127.0.0.1), and reading the Lease.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use nix::sys::signal::Signal;
use serde_json::json;

use super::process::send;
use super::{Context, Error};

/// The admin context of the start script's kubeconfig.
const CONTEXT: &str = "local";

/// A running etcd + kube-apiserver, stopped when dropped.
pub struct Apiserver {
    /// The admin kubeconfig the start script wrote.
    pub kubeconfig: PathBuf,
    client: Client,
    stopper: Stopper,
}

impl Apiserver {
    /// Builds (cached after the first time) and starts the tier; returns once it is ready.
    pub async fn start(ctx: &Context, scripts: &Path) -> Result<Apiserver, Error> {
        let build = scripts.join("build-kube-apiserver.sh");
        let mut build_cmd = Command::new("bash");
        build_cmd.arg(&build);
        let binary = last_line(build_cmd).await?;
        let state = ctx.work.join("k8s");
        std::fs::create_dir_all(&state).map_err(Error::io("creating the k8s state directory"))?;
        let mut start = Command::new("bash");
        start
            .arg(scripts.join("start-kube-apiserver.sh"))
            .env("KUBE_APISERVER", &binary)
            .env("STATE_DIR", &state);
        // Whatever happens next, the guard owns the processes from the moment their PIDs exist.
        let started = last_line(start).await;
        let pid = |name: &str| {
            std::fs::read_to_string(state.join(format!("{name}.pid")))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        let pids = [("apiserver", pid("apiserver")), ("etcd", pid("etcd"))];
        let stopper = Stopper { state, pids };
        let kubeconfig = PathBuf::from(started?);
        let client = client(&kubeconfig).await?;
        Ok(Apiserver {
            kubeconfig,
            client,
            stopper,
        })
    }

    /// A client with the admin credentials.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) both processes: a control plane that neither
    /// answers nor closes its connections.
    pub fn freeze(&self, frozen: bool) -> Result<(), Error> {
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        for (name, pid) in self.stopper.pids {
            send(pid, signal).map_err(|e| Error::Child(format!("{signal} to {name}: {e}")))?;
        }
        Ok(())
    }

    /// Creates namespace `ns`.
    pub async fn namespace(&self, ns: &str) -> Result<(), Error> {
        let object: Namespace = from_json(json!({"metadata": {"name": ns}}))?;
        let api = Api::<Namespace>::all(self.client());
        api.create(&PostParams::default(), &object)
            .await
            .map(drop)
            .map_err(kube_err("creating the namespace"))
    }

    /// Creates Deployment `name` with `replicas` (it gets no pods: there is no controller).
    pub async fn deployment(&self, ns: &str, name: &str, replicas: i32) -> Result<(), Error> {
        let object: Deployment = from_json(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "echo", "image": "tidegate"}]}}
            }
        }))?;
        Api::<Deployment>::namespaced(self.client(), ns)
            .create(&PostParams::default(), &object)
            .await
            .map(drop)
            .map_err(kube_err("creating the Deployment"))
    }

    /// The Deployment's `spec.replicas` and `resourceVersion`.
    pub async fn replicas(&self, ns: &str, name: &str) -> Result<(i32, String), Error> {
        let d = Api::<Deployment>::namespaced(self.client(), ns)
            .get(name)
            .await
            .map_err(kube_err("reading the Deployment"))?;
        let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(0);
        Ok((replicas, d.metadata.resource_version.unwrap_or_default()))
    }

    /// Creates an EndpointSlice of Service `service` with one ready endpoint at `addr`.
    pub async fn slice(
        &self,
        ns: &str,
        service: &str,
        name: &str,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        let object: EndpointSlice = from_json(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "ws", "port": addr.port(), "protocol": "TCP"}],
            "endpoints": [{
                "addresses": [addr.ip().to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "name": name, "namespace": ns},
            }],
        }))?;
        Api::<EndpointSlice>::namespaced(self.client(), ns)
            .create(&PostParams::default(), &object)
            .await
            .map(drop)
            .map_err(kube_err("creating an EndpointSlice"))
    }

    /// The Lease's holder and `renewTime`, if it exists.
    pub async fn lease(&self, ns: &str, name: &str) -> Result<Option<(String, SystemTime)>, Error> {
        let lease = Api::<Lease>::namespaced(self.client(), ns)
            .get_opt(name)
            .await
            .map_err(kube_err("reading the Lease"))?;
        Ok(lease.and_then(|l| l.spec).and_then(|s| {
            let renewed = s.renew_time?.0.as_millisecond();
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(renewed).ok()?);
            Some((s.holder_identity.unwrap_or_default(), at))
        }))
    }
}

/// Stops the two processes by PID when dropped.
struct Stopper {
    state: PathBuf,
    pids: [(&'static str, u32); 2],
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let ours: Vec<u32> = self
            .pids
            .iter()
            .map(|&(_, pid)| pid)
            .filter(|&pid| pid != 0 && runs_in(pid, &self.state))
            .collect();
        for &pid in &ours {
            let _ = send(pid, Signal::SIGCONT);
            let _ = send(pid, Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while ours.iter().any(|&p| runs_in(p, &self.state)) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for &pid in &ours {
            if runs_in(pid, &self.state) {
                let _ = send(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Whether `pid` is alive and its command line names `state` (so it is one we started).
fn runs_in(pid: u32, state: &Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|r| r.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(&*state.to_string_lossy())
}

/// Runs a set-up script and returns the last line of its stdout.
async fn last_line(mut cmd: Command) -> Result<String, Error> {
    let line = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| Error::Child(format!("{line}: {e}")))?
        .map_err(Error::io(line.clone()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(last) if out.status.success() => Ok(last.trim().to_owned()),
        _ => Err(Error::Command {
            command: line,
            detail: out.status.to_string(),
        }),
    }
}

async fn client(kubeconfig: &Path) -> Result<Client, Error> {
    let file = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Child(format!("{}: {e}", kubeconfig.display())))?;
    let options = KubeConfigOptions {
        context: Some(CONTEXT.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| Error::Child(format!("{}: {e}", kubeconfig.display())))?;
    // Built beside the proxy (`cargo xtask soak` builds both at once), rustls has both kube's
    // ring and the proxy's aws-lc-rs, and so no default provider: name one, as the proxy does.
    let _ = rustls::crypto::CryptoProvider::install_default(
        rustls::crypto::aws_lc_rs::default_provider(),
    );
    Client::try_from(config).map_err(kube_err("building a client"))
}

fn kube_err(what: &'static str) -> impl Fn(kube::Error) -> Error {
    move |source| Error::Kube {
        what: what.to_owned(),
        source,
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::Child(format!("building an object: {e}")))
}
