//! A network namespace for one backend with an address that exists only there: `ip netns
//! add`, a veth pair with a private /30 (the host end outside, the other end inside), and a
//! way to black-hole the backend with nft DROP rules inside the namespace — a backend whose
//! packets vanish, unlike a SIGSTOPped process, whose kernel still completes handshakes and
//! answers keepalive probes. The guard deletes the veth and the namespace when dropped (at the
//! end of the scenario, on an error, on Ctrl-C); namespaces left by an earlier run that was
//! killed outright (`tgsoak-<pid>` with no such process) are removed on creation.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables).

use std::net::Ipv4Addr;
use std::process::Command;

use super::Error;

/// Prefix of the namespaces (and veth names) this suite creates.
const PREFIX: &str = "tgsoak";

/// A namespace with a veth pair into it. Removed when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_link: String,
    /// The address of the host's end.
    pub host: Ipv4Addr,
    /// The address inside the namespace, where its backend listens.
    pub inner: Ipv4Addr,
}

impl Netns {
    /// Creates `tgsoak-<pid>` with `10.213.X.1` outside and `10.213.X.2` inside.
    pub fn create() -> Result<Netns, Error> {
        remove_stale();
        let pid = std::process::id();
        let name = format!("{PREFIX}-{pid}");
        let octet = (pid % 250) as u8 + 1;
        let host = Ipv4Addr::new(10, 213, octet, 1);
        let inner = Ipv4Addr::new(10, 213, octet, 2);
        let host_link = format!("{PREFIX}h{pid}");
        let inner_link = format!("{PREFIX}i{pid}");
        let routes = output("ip", &["-4", "route", "show"])?;
        if routes.contains(&format!("10.213.{octet}.")) {
            return Err(Error::Child(format!(
                "10.213.{octet}.0/30 is already routed here; not creating a namespace over it"
            )));
        }
        run("ip", &["netns", "add", &name])?;
        // From here on the guard removes what exists.
        let ns = Netns {
            name,
            host_link,
            host,
            inner,
        };
        let (h, i, n) = (&ns.host_link, inner_link.as_str(), ns.name.as_str());
        run("ip", &["link", "add", h, "type", "veth", "peer", "name", i])?;
        run("ip", &["link", "set", i, "netns", n])?;
        run("ip", &["addr", "add", &format!("{host}/30"), "dev", h])?;
        run("ip", &["link", "set", h, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", n, "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        inside(&["addr", "add", &format!("{inner}/30"), "dev", i])?;
        inside(&["link", "set", i, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops every packet to and from TCP port `port` inside the namespace (nft, input and
    /// output hooks): the backend there neither answers nor sends anything more.
    pub fn black_hole(&self, port: u16) -> Result<(), Error> {
        let rules = format!(
            "table inet soak {{\n  chain input {{ type filter hook input priority 0; policy accept; tcp dport {port} drop; }}\n  chain output {{ type filter hook output priority 0; policy accept; tcp sport {port} drop; }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("{}-blackhole.nft", self.name));
        std::fs::write(&file, rules).map_err(Error::io("writing the nft rules"))?;
        let path = file.to_string_lossy().into_owned();
        let done = run("ip", &["netns", "exec", &self.name, "nft", "-f", &path]);
        let _ = std::fs::remove_file(&file);
        done
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes the pair; the namespace goes with its name once
        // no process is left in it (its backend is stopped before this guard drops).
        let _ = run("ip", &["link", "del", &self.host_link]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Whether namespaces can be made here: root, `ip` and `nft`.
pub fn available() -> Result<(), String> {
    let root = output("id", &["-u"]).is_ok_and(|u| u.trim() == "0");
    if !root {
        return Err("needs root for a network namespace".into());
    }
    for (tool, flag, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        if !Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Err(format!("needs `{tool}` ({package})"));
        }
    }
    Ok(())
}

/// Removes `tgsoak-<pid>` namespaces whose process is gone (a run killed with SIGKILL).
fn remove_stale() {
    let Ok(list) = output("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["link", "del", &format!("{PREFIX}h{pid}")]);
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

fn output(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    output(program, args).map(drop)
}
