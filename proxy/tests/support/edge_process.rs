//! An edge as a real `tidegate proxy` process (so a test can SIGKILL it), on 127.0.0.1 port 0:
//! its config in a file of the test's temp dir, its addresses read from its JSON start line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{DEADLINE, Ws, body, get};

/// A running `tidegate proxy` child process.
pub struct EdgeProcess {
    child: Child,
    /// Where it takes client traffic.
    pub traffic: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Its config file (rewrite it to reload).
    pub config: PathBuf,
}

impl EdgeProcess {
    /// Writes `yaml` to `dir/name.yaml` and runs a proxy on it; returns once it listens.
    /// `yaml` should say `log_format: json` and listen on port 0.
    pub async fn start(dir: &Path, name: &str, yaml: &str) -> EdgeProcess {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .arg("proxy")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let f = &v["fields"];
                if f["message"] == "tidegate proxy starting" {
                    let addr = |k: &str| f[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
                    return (addr("traffic"), addr("admin"));
                }
            }
            panic!("{name} exited before it started");
        };
        let (traffic, admin) = tokio::time::timeout(DEADLINE, started)
            .await
            .expect("the edge starts");
        // Keep reading, or the child blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        EdgeProcess {
            child,
            traffic,
            admin,
            config,
        }
    }

    /// Rewrites the config file (the proxy reloads it within a second or two).
    pub fn rewrite(&self, yaml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// SIGKILL: no goodbye, no release.
    pub fn kill(&mut self) {
        self.child.start_kill().unwrap();
    }

    /// Its `/api/v1/state`.
    pub async fn state(&self) -> Value {
        serde_json::from_str(body(&get(self.admin, "/api/v1/state").await)).unwrap()
    }

    /// Its `/metrics`.
    pub async fn metrics(&self) -> String {
        body(&get(self.admin, "/metrics").await).to_owned()
    }

    /// A WebSocket through it.
    pub async fn try_ws(&self) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        super::try_ws_to(self.traffic).await
    }
}
