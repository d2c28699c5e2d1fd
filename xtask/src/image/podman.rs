//! podman, configured through files of our own: `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`
//! name two files under `target/podman/`, so the machine's `/etc/containers` is never read for
//! these settings nor changed.
//!
//! The settings are the ones these machines need: the `runc` runtime (crun fails on their cgroup
//! layout), default ulimits no higher than the sandbox allows (`nofile=20000`, `nproc=32768`),
//! cgroupfs and file-based events and logs (no systemd, no journald). Images live in a store of
//! our own under the user's cache directory, shared by every worktree and CI clone on the machine
//! (so the base image is made once per machine); its run-time state lives in one fixed place
//! beside it, as podman requires for a shared store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A podman with our configuration.
pub struct Podman {
    /// `target/podman/containers.conf`.
    containers_conf: PathBuf,
    /// `target/podman/storage.conf`.
    storage_conf: PathBuf,
}

const CONTAINERS_CONF: &str = r#"# Written by `cargo xtask image`; podman reads it through CONTAINERS_CONF.
[containers]
# The sandbox refuses higher limits than these.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
# crun fails on this machine's cgroup layout; Debian's runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{run}/libpod"

[network]
network_config_dir = "{state}/networks"
"#;

const STORAGE_CONF: &str = r#"# Written by `cargo xtask image`; podman reads it through CONTAINERS_STORAGE_CONF.
[storage]
driver = "overlay"
graphroot = "{state}/storage"
runroot = "{run}/storage"
"#;

impl Podman {
    /// Writes the two files into `dir` (creating it) and returns a podman that uses them.
    pub fn configure(dir: &Path) -> Result<Self, String> {
        let state = state_dir()?;
        let run = run_dir();
        let fill = |template: &str| {
            template
                .replace("{state}", &state.display().to_string())
                .replace("{run}", &run.display().to_string())
        };
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(path)
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self {
            containers_conf: write("containers.conf", fill(CONTAINERS_CONF))?,
            storage_conf: write("storage.conf", fill(STORAGE_CONF))?,
        })
    }

    /// `podman ARGS…` with our configuration; its standard output goes to our standard error
    /// (ours carries only the image reference).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = crate::command("podman");
        cmd.args(args)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .stdout(super::to_stderr());
        cmd
    }

    /// Runs `podman ARGS…`; an error names the command.
    pub fn run(&self, args: &[&str]) -> Result<(), String> {
        eprintln!("xtask: podman {}", args.join(" "));
        let status = self
            .command(args)
            .status()
            .map_err(|e| format!("cannot run podman: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("podman {} failed: {status}", args.join(" ")))
        }
    }

    /// What `podman ARGS…` prints, trimmed.
    pub fn output(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run podman: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Whether the image `reference` is in the store.
    pub fn image_exists(&self, reference: &str) -> bool {
        self.command(&["image", "exists", reference])
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The image store: `$XDG_CACHE_HOME/tidegate-podman`, else `~/.cache/tidegate-podman`.
fn state_dir() -> Result<PathBuf, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(cache.join("tidegate-podman"))
}

/// The store's run-time state (locks, mounts): one fixed place per machine, as root.
fn run_dir() -> PathBuf {
    PathBuf::from("/run/tidegate-podman")
}
