//! `cargo xtask`: the project's set-up and task runner, so that one command works on a fresh
//! machine. pingora's build runs `cmake`, which a fresh machine lacks: every task checks for it
//! first and installs it with apt-get when it can (as root, or through sudo).
//!
//! - `cargo xtask demo [ARGS…]`: build in release and run `tidegate demo ARGS…`.
//! - `cargo xtask test`: run every test (nextest when installed, else cargo test) and doctests.
//! - `cargo xtask image [--tools]`: build the container image with podman from a host-built
//!   binary and print its reference (see [`image`]).
//! - `cargo xtask soak [--minutes N] [--only NAME,…] [--ci]`: build the release binaries and run
//!   the fault and soak suite (see [`soak`]).

mod image;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => ensure_cmake().and_then(|()| demo(&args[1..])),
        Some("test") => ensure_cmake().and_then(|()| test(&args[1..])),
        Some("image") => image::image(&args[1..]),
        Some("soak") => ensure_cmake().and_then(|()| soak::soak(&args[1..])),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str =
    "usage: cargo xtask demo [ARGS…] | test [ARGS…] | image [--tools] | soak [ARGS…]
  demo   build tidegate in release and run `tidegate demo` (see `tidegate demo --help`)
  test   run the whole test suite (what CI runs)
  image  build the container image here with podman (no registry needed); prints its reference
         (--tools: only install and configure podman, runc and debootstrap)
  soak   build in release and run the fault and soak suite, writing benches/results/soak.md
         (--minutes N: length of the timed scenarios, default 10; --only hold,kills,…;
         --ci: the short form; --help: every option)";

/// A command for a child process, without the variables `cargo run` set for xtask itself
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …: they describe xtask, not the child). An inner cargo
/// that inherits them hands them to build scripts that read them (ring's reads
/// `CARGO_MANIFEST_DIR`), whose changed fingerprint rebuilds ring and everything above it: after
/// each `cargo xtask …`, and again at the next plain `cargo build`.
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The workspace's root directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || workspace_root().join("target"),
            |dir| {
                if dir.is_absolute() {
                    dir
                } else {
                    workspace_root().join(dir)
                }
            },
        )
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = command(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {status}", args.join(" ")))
    }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    command(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo build --release --locked` of each `(package, binary)` pair, cmake first (pingora needs
/// it); the binaries land in `target_dir()/release/`.
fn release_build(binaries: &[(&str, &str)]) -> Result<(), String> {
    ensure_cmake()?;
    let mut args = vec!["build", "--release", "--locked"];
    for (package, bin) in binaries {
        args.extend(["-p", package, "--bin", bin]);
    }
    run("cargo", &args)
}

/// pingora's zlib-ng build needs cmake even without TLS.
fn ensure_cmake() -> Result<(), String> {
    if succeeds("cmake", &["--version"]) {
        return Ok(());
    }
    eprintln!("xtask: cmake is missing (pingora needs it to build)");
    if apt_install("cmake").is_ok() && succeeds("cmake", &["--version"]) {
        Ok(())
    } else {
        Err(
            "cmake is required to build pingora and could not be installed automatically: \
             install it (Debian/Ubuntu: apt-get install cmake; macOS: brew install cmake) and retry"
                .to_owned(),
        )
    }
}

fn demo(args: &[String]) -> Result<(), String> {
    let mut cargo = vec![
        "run",
        "--release",
        "--quiet",
        "-p",
        "tidegate-proxy",
        "--bin",
        "tidegate",
        "--",
        "demo",
    ];
    cargo.extend(args.iter().map(String::as_str));
    run("cargo", &cargo)
}

/// Chromium (Debian) and playwright-core (npm, into target/browser-tools) for the status-page
/// check; returns the directory holding `node_modules`.
fn ensure_browser_tools() -> Result<String, String> {
    if !succeeds("node", &["--version"]) {
        apt_install("nodejs npm")?;
    }
    if !succeeds("chromium", &["--version"]) {
        apt_install("chromium")?;
    }
    let dir = format!(
        "{}/target/browser-tools",
        env!("CARGO_MANIFEST_DIR").trim_end_matches("/xtask")
    );
    if !std::path::Path::new(&dir)
        .join("node_modules/playwright-core")
        .is_dir()
    {
        run(
            "npm",
            &[
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                &dir,
                "playwright-core@1",
            ],
        )?;
    }
    Ok(dir)
}

fn apt_install(packages: &str) -> Result<(), String> {
    eprintln!("xtask: installing {packages} with apt-get");
    let install = format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}"
    );
    let is_root = succeeds("sh", &["-c", "[ \"$(id -u)\" = 0 ]"]);
    let ok = if is_root {
        succeeds("sh", &["-c", &install])
    } else {
        succeeds("sudo", &["-n", "sh", "-c", &install])
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "could not install {packages}: install it and retry"
        ))
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    if succeeds("cargo", &["nextest", "--version"]) {
        let mut args = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        args.extend(&extra);
        run("cargo", &args)?;
    } else {
        let mut args = vec!["test", "--workspace", "--no-fail-fast"];
        args.extend(&extra);
        run("cargo", &args)?;
    }
    run("cargo", &["test", "--workspace", "--doc"])?;
    // The status page, and wss:// through the proxy, in headless Chromium (ignored by plain
    // `cargo test`: they need a browser).
    let tools = ensure_browser_tools()?;
    let status = command("cargo")
        .args([
            "test",
            "-p",
            "tidegate-proxy",
            "--test",
            "status_page",
            "--",
            "--ignored",
        ])
        .env("TIDEGATE_BROWSER_TOOLS", &tools)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the browser tests (status page, wss://) failed".into())
    }
}
