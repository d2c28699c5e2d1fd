//! `cargo xtask image`: the runtime image of `deploy/Dockerfile`, built on a machine with no
//! container registry and no Rust inside containers.
//!
//! 1. podman, runc and debootstrap are installed with apt-get where missing, and podman is
//!    configured through files of our own ([`podman`]): nothing under /etc/containers is read
//!    for these settings or changed.
//! 2. The base image is made once per machine by debootstrap ([`base`]), standing in for the
//!    Dockerfile's `runtime-base` stage.
//! 3. The binary is built on the host (`cargo build --release --locked`) and copied, without
//!    its debug info, into a build context that holds nothing else.
//! 4. `podman build --target runtime-prebuilt --build-arg RUNTIME_BASE=…` builds the
//!    Dockerfile's `runtime-base` stage on that base and copies the binary onto it, as the
//!    registry path copies the builder's; earlier, now untagged builds of the image are pruned.
//! 5. The image runs `tidegate --version` as uid 65532 on a read-only root filesystem (so the
//!    binary's libraries are all there), its size is reported, and its reference is printed as
//!    the last (only) line of standard output; everything else goes to standard error.
//!
//! `cargo xtask image --tools` does step 1 only and exits 0 when podman is usable: `.ci/run`
//! uses it to decide whether the container smoke test (`deploy/image-smoke.sh`) can run.
//! The configuration files are `target/podman/containers.conf` and `storage.conf`; to use the
//! image by hand, export `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` naming them.

mod base;
mod podman;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use podman::Podman;

/// The image's name; its tag is the workspace version.
const IMAGE_NAME: &str = "localhost/tidegate";

/// Runs `cargo xtask image [--tools]`.
pub fn image(args: &[String]) -> Result<(), String> {
    let tools_only = match args {
        [] => false,
        [flag] if flag == "--tools" => true,
        _ => return Err("usage: cargo xtask image [--tools]".into()),
    };
    if !is_root() {
        return Err(
            "cargo xtask image runs podman and debootstrap as root (as these machines \
                    do); elsewhere build with a registry: docker build -f deploy/Dockerfile ."
                .into(),
        );
    }
    ensure_tools()?;
    let dir = super::target_dir().join("podman");
    let podman = Podman::configure(&dir)?;
    podman.run(&["info", "--format", "podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, store {{.Store.GraphRoot}}"])?;
    if tools_only {
        return Ok(());
    }
    let base = base::ensure(&podman, &base::host_codename()?, &dir)?;
    let binary = build_binary()?;
    let reference = format!("{IMAGE_NAME}:{}", env!("CARGO_PKG_VERSION"));
    build_image(&podman, &dir, &binary, &base, &reference)?;
    // Earlier builds of this image, now untagged, would pile up in the store.
    podman.run(&[
        "image",
        "prune",
        "--force",
        "--filter",
        "label=org.opencontainers.image.title=tidegate",
    ])?;
    check_image(&podman, &reference)?;
    println!("{reference}");
    Ok(())
}

/// podman, runc, debootstrap (and objcopy), installed with apt-get where missing.
fn ensure_tools() -> Result<(), String> {
    let missing: Vec<&str> = [
        ("podman", "podman"),
        ("runc", "runc"),
        ("debootstrap", "debootstrap"),
        ("objcopy", "binutils"),
    ]
    .into_iter()
    .filter(|(program, _)| !super::succeeds(program, &["--version"]))
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        super::apt_install(&missing.join(" "))?;
    }
    Ok(())
}

/// The release binary, built on the host.
fn build_binary() -> Result<PathBuf, String> {
    super::release_build(&[("tidegate-proxy", "tidegate")])?;
    Ok(super::target_dir().join("release/tidegate"))
}

/// `podman build` of the Dockerfile's `runtime-prebuilt` stage: `binary` on `base`.
fn build_image(
    podman: &Podman,
    dir: &Path,
    binary: &Path,
    base: &str,
    reference: &str,
) -> Result<(), String> {
    let context = dir.join("context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context).map_err(|e| format!("{}: {e}", context.display()))?;
    // Debug info (line tables, ~100 MB of the ~120 MB binary) stays in target/release; the
    // image keeps the symbols, so backtraces still name functions.
    let copy = context.join("tidegate");
    run(
        "objcopy",
        &[
            "--strip-debug",
            &binary.display().to_string(),
            &copy.display().to_string(),
        ],
    )?;
    let dockerfile = super::workspace_root().join("deploy/Dockerfile");
    let base_arg = format!("RUNTIME_BASE={base}");
    let revision = format!("org.opencontainers.image.revision={}", git_revision());
    let version = format!(
        "org.opencontainers.image.version={}",
        env!("CARGO_PKG_VERSION")
    );
    podman.run(&[
        "build",
        "--pull=never",
        // Nothing to cache (the one COPY changes with every build); no stage images left behind.
        "--layers=false",
        "--file",
        &dockerfile.display().to_string(),
        "--target",
        "runtime-prebuilt",
        "--build-arg",
        &base_arg,
        "--label",
        &version,
        "--label",
        &revision,
        "--tag",
        reference,
        &context.display().to_string(),
    ])
}

/// The image starts the binary as a non-root user on a read-only root filesystem; reports the
/// image's size.
fn check_image(podman: &Podman, reference: &str) -> Result<(), String> {
    let version = podman.output(&[
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        reference,
        "--version",
    ])?;
    let user = podman.output(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        reference,
    ])?;
    let size = podman.output(&["image", "inspect", "--format", "{{.Size}}", reference])?;
    let mb = size
        .parse::<f64>()
        .map_or(size.clone(), |b| format!("{:.1} MB", b / 1e6));
    eprintln!("xtask: {reference}: `{version}`, user {user}, size {mb}");
    if user.starts_with('0') || user.is_empty() || user.starts_with("root") {
        return Err(format!("{reference} runs as root (user `{user}`)"));
    }
    Ok(())
}

/// Runs `program args…` like the other tasks, with its standard output sent to standard error.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = super::command(program)
        .args(args)
        .stdout(to_stderr())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {status}", args.join(" ")))
    }
}

/// A handle on our standard error, for a child's standard output.
fn to_stderr() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from)
}

fn is_root() -> bool {
    super::succeeds("sh", &["-c", "[ \"$(id -u)\" = 0 ]"])
}

fn git_revision() -> String {
    super::command("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(super::workspace_root())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}
