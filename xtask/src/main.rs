//! `cargo xtask`: the project's set-up and task runner, so that one command works on a fresh
//! machine. pingora's build runs `cmake`, which a fresh machine lacks: every task checks for it
//! first and installs it with apt-get when it can (as root, or through sudo).
//!
//! - `cargo xtask demo [ARGS…]`: build in release and run `tidegate demo ARGS…`.
//! - `cargo xtask test`: run every test (nextest when installed, else cargo test) and doctests.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => ensure_cmake().and_then(|()| demo(&args[1..])),
        Some("test") => ensure_cmake().and_then(|()| test(&args[1..])),
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

const USAGE: &str = "usage: cargo xtask demo [ARGS…] | cargo xtask test [ARGS…]
  demo  build tidegate in release and run `tidegate demo` (see `tidegate demo --help`)
  test  run the whole test suite (what CI runs)";

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
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
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pingora's zlib-ng build needs cmake even without TLS.
fn ensure_cmake() -> Result<(), String> {
    if succeeds("cmake", &["--version"]) {
        return Ok(());
    }
    eprintln!("xtask: cmake is missing (pingora needs it to build); installing it with apt-get");
    let is_root = succeeds("sh", &["-c", "[ \"$(id -u)\" = 0 ]"]);
    let install =
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake";
    let ok = if is_root {
        succeeds("sh", &["-c", install])
    } else {
        succeeds("sudo", &["-n", "sh", "-c", install])
    };
    if ok && succeeds("cmake", &["--version"]) {
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
    run("cargo", &["test", "--workspace", "--doc"])
}
