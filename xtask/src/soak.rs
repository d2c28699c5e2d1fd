//! `cargo xtask soak [ARGS…]`: builds `tidegate` and the suite's driver (`soak`, in
//! `benches/src/bin/soak.rs`) in release, makes sure the tools of the black-hole scenario are
//! there (`ip` from iproute2, `nft` from nftables; installed with apt-get when missing, and
//! the scenario is skipped if they cannot be), and runs the driver with `ARGS…` (`--minutes N`,
//! `--only NAME,…`, `--ci`; `--help` lists them). Its exit status is the task's.

use std::process::Stdio;

/// Builds and runs the suite.
pub fn soak(args: &[String]) -> Result<(), String> {
    if !args.iter().any(|a| a == "--help" || a == "-h") {
        tools();
    }
    build()?;
    driver(args)
}

fn build() -> Result<(), String> {
    super::release_build(&[("tidegate-proxy", "tidegate"), ("tidegate-benches", "soak")])
}

/// `ip` and `nft` for the network namespace of the black-hole scenario, best effort.
fn tools() {
    let missing: Vec<&str> = [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")]
        .into_iter()
        .filter(|(tool, flag, _)| !super::succeeds(tool, &[flag]))
        .map(|(_, _, package)| package)
        .collect();
    if !missing.is_empty()
        && let Err(e) = super::apt_install(&missing.join(" "))
    {
        eprintln!("xtask: {e}; the black-hole scenario will be skipped");
    }
}

fn driver(args: &[String]) -> Result<(), String> {
    let soak = super::target_dir().join("release/soak");
    eprintln!("xtask: {} {}", soak.display(), args.join(" "));
    let status = super::command(&soak.to_string_lossy())
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", soak.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the soak suite failed: {status}"))
    }
}
