//! Config reload the way a Kubernetes ConfigMap volume delivers it (the kubelet swaps the
//! `..data` symlink): valid changes apply, an invalid file keeps the running config, settings
//! that need a restart are reported — and no live WebSocket notices any of it.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::support::*;
use tidegate_proxy::server::App;

/// A ConfigMap-style volume: `config.yaml -> ..data/config.yaml`, `..data -> ..<version>`.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(text: &str) -> ConfigMapDir {
        let mut d = ConfigMapDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        d.publish(text);
        symlink("..data/config.yaml", d.path()).unwrap();
        d
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// A proxy running this volume's config and watching it.
    fn spawn_watching(&mut self) -> tidegate_proxy::server::Running {
        self.spawn_watching_after(|_| {})
    }

    /// A proxy built from this volume's config and watching it, with `meanwhile` done to the
    /// volume after the config was read and before the proxy (and its watch) starts.
    fn spawn_watching_after(
        &mut self,
        meanwhile: impl FnOnce(&mut Self),
    ) -> tidegate_proxy::server::Running {
        let path = self.path();
        let config = tidegate_proxy::config::load_file(&path).unwrap();
        let mut app = App::build(config).unwrap();
        let load_path: PathBuf = path.clone();
        app.watch_config(
            path,
            Box::new(move || tidegate_proxy::config::load_file(Path::new(&load_path))),
        )
        .unwrap();
        meanwhile(self);
        app.spawn()
    }

    /// Writes a new version and swaps `..data` to it atomically, as the kubelet does.
    fn publish(&mut self, text: &str) {
        self.version += 1;
        let name = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.path().join(&name)).unwrap();
        std::fs::write(self.dir.path().join(&name).join("config.yaml"), text).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

fn yaml(backend: std::net::SocketAddr, cap: &str, listen: &str) -> String {
    format!(
        "listen: {listen}\nadmin_listen: 127.0.0.1:0\nbackends:\n  static: [{backend}]\nmax_connections_per_backend: {cap}\ngrace_period: 1s\nshutdown_timeout: 1s\n"
    )
}

async fn reloads(proxy: &tidegate_proxy::server::Running, result: &str) -> f64 {
    sample(
        &metrics(proxy).await,
        &format!("tidegate_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_reloads_apply_or_are_refused_without_dropping_live_websockets() {
    let backend = Backend::start().await;
    let mut volume = ConfigMapDir::new(&yaml(backend.addr, "5", "127.0.0.1:0"));
    let proxy = volume.spawn_watching();
    let mut live = [ws(&proxy).await, ws(&proxy).await, ws(&proxy).await];

    volume.publish(&yaml(backend.addr, "7", "127.0.0.1:0"));
    wait_until("reload applied", || async {
        reloads(&proxy, "ok").await == 1.0
    })
    .await;
    assert_eq!(state(&proxy).await["backends"][0]["capacity"], 7);

    volume.publish(&yaml(backend.addr, "lots", "127.0.0.1:0"));
    wait_until("invalid reload refused", || async {
        reloads(&proxy, "error").await == 1.0
    })
    .await;
    assert_eq!(
        state(&proxy).await["backends"][0]["capacity"],
        7,
        "the running config must stay"
    );

    volume.publish(&yaml(backend.addr, "9", "127.0.0.1:1"));
    wait_until("restart-only change reported", || async {
        reloads(&proxy, "restart_needed").await == 1.0
    })
    .await;
    assert_eq!(
        state(&proxy).await["backends"][0]["capacity"],
        9,
        "the live part still applies"
    );

    for (i, c) in live.iter_mut().enumerate() {
        echo_once(c, &format!("survived the reloads {i}")).await;
    }
    assert_eq!(state(&proxy).await["totals"]["live"], 3);
    assert_counts_match(&proxy, &[&backend]).await;
}

/// The client socket of `ws` as the proxy holds it: (keepalive on, idle time).
fn client_leg_keepalive(ws: &Ws) -> (bool, std::time::Duration) {
    let (on, idle, _, _) = crate::keepalive::keepalive_of(&proxy_end_of(ws));
    (on, idle)
}

/// Publishes `text`, waits until it is the `nth` valid reload applied, and opens a WebSocket
/// through the reloaded proxy.
async fn reload_then_open(
    volume: &mut ConfigMapDir,
    proxy: &tidegate_proxy::server::Running,
    text: &str,
    nth: f64,
) -> Ws {
    volume.publish(text);
    wait_until("reload applied", || async {
        reloads(proxy, "ok").await == nth
    })
    .await;
    let mut opened = ws(proxy).await;
    echo_once(&mut opened, "up").await;
    opened
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_tcp_keepalive_reaches_the_next_connections_and_leaves_open_ones_alone() {
    use std::time::Duration;
    let backend = Backend::start().await;
    let with = |keepalive: &str| {
        format!(
            "{}tcp_keepalive: {keepalive}\n",
            yaml(backend.addr, "10", "127.0.0.1:0")
        )
    };
    let mut volume = ConfigMapDir::new(&with("{idle: 31s}"));
    let proxy = volume.spawn_watching();
    let mut first = ws(&proxy).await;
    echo_once(&mut first, "up").await;
    assert_eq!(
        client_leg_keepalive(&first),
        (true, Duration::from_secs(31))
    );

    let mut second = reload_then_open(&mut volume, &proxy, &with("off"), 1.0).await;
    assert!(!client_leg_keepalive(&second).0, "off after the reload");

    let mut third = reload_then_open(&mut volume, &proxy, &with("{idle: 45s}"), 2.0).await;
    assert_eq!(
        client_leg_keepalive(&third),
        (true, Duration::from_secs(45))
    );
    // What a socket was accepted with, it keeps.
    assert_eq!(
        client_leg_keepalive(&first),
        (true, Duration::from_secs(31))
    );
    assert!(!client_leg_keepalive(&second).0);
    for c in [&mut first, &mut second, &mut third] {
        echo_once(c, "still up").await;
    }
    assert_counts_match(&proxy, &[&backend]).await;
}

/// The watch's first look at the file is a read, not an assumption that the file still holds
/// what the process started with: a version published in between is applied. (It used to
/// fingerprint the file when its service started, and such a version was never applied; a
/// loaded machine once started it late enough for the keepalive test above to miss a reload.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_published_before_the_watch_starts_is_applied() {
    let backend = Backend::start().await;
    let mut volume = ConfigMapDir::new(&yaml(backend.addr, "10", "127.0.0.1:0"));
    let proxy = volume.spawn_watching_after(|v| v.publish(&yaml(backend.addr, "7", "127.0.0.1:0")));
    wait_until("the version published before the watch started", || async {
        state(&proxy).await["backends"][0]["capacity"] == 7
    })
    .await;
    assert_eq!(reloads(&proxy, "ok").await, 1.0);
    let mut c = ws(&proxy).await;
    echo_once(&mut c, "up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_of_a_backend_that_left_the_table_leave_the_scrape() {
    let stays = Backend::start().await;
    let leaves = Backend::start().await;
    let dead: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap() // dropped: connects to it are refused
    };
    let two = |a: std::net::SocketAddr, b: &str| {
        format!(
            "admin_listen: 127.0.0.1:0\nlisten: 127.0.0.1:0\nbackends:\n  static: [{a}{b}]\ngrace_period: 1s\nshutdown_timeout: 1s\n"
        )
    };
    let mut volume = ConfigMapDir::new(&two(stays.addr, &format!(", {}, {dead}", leaves.addr)));
    let proxy = volume.spawn_watching();
    let series_of = |m: &str, b: std::net::SocketAddr| {
        m.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("backend=\"{b}\"")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Upgrades and plain requests until every backend has been picked (ties go at random; the
    // dead one is tried, fails, is ejected).
    wait_until("counter series for all three", || async {
        drop(ws(&proxy).await);
        get(proxy.traffic_addr, "/healthz").await;
        let m = metrics(&proxy).await;
        let counters = |b| {
            series_of(&m, b)
                .iter()
                .filter(|l| l.contains("_total"))
                .count()
        };
        let upgraded = series_of(&m, stays.addr)
            .iter()
            .any(|l| l.starts_with("tidegate_upgrades_total"));
        upgraded && counters(leaves.addr) > 0 && counters(dead) > 0
    })
    .await;

    volume.publish(&two(stays.addr, ""));
    wait_until("the departed backends' series are gone", || async {
        let m = metrics(&proxy).await;
        series_of(&m, leaves.addr).is_empty() && series_of(&m, dead).is_empty()
    })
    .await;
    let m = metrics(&proxy).await;
    assert!(
        series_of(&m, stays.addr)
            .iter()
            .any(|l| l.starts_with("tidegate_upgrades_total")),
        "the remaining backend keeps its counters:\n{m}"
    );
}
