//! The runtime base image made without a registry: `debootstrap --variant=minbase` of the host's
//! own Debian release (so its glibc is the one the host-built binary was linked against) with CA
//! certificates, slimmed like debian-slim (no apt lists, docs, man pages or locales), imported
//! into podman's store as `localhost/tidegate-runtime-base:CODENAME`. It stands in for the
//! Dockerfile's `runtime-base` stage (debian-slim + ca-certificates) and is made once per store.

use std::path::Path;
use std::process::Stdio;

use super::podman::Podman;

/// What debian-slim leaves out, relative to the root of the tree.
const SLIMMED: &[&str] = &[
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
];

/// The reference of the base image for `codename`, made first if the store lacks it.
pub fn ensure(podman: &Podman, codename: &str, scratch: &Path) -> Result<String, String> {
    let reference = format!("localhost/tidegate-runtime-base:{codename}");
    if podman.image_exists(&reference) {
        eprintln!("xtask: base image {reference} is in the store");
        return Ok(reference);
    }
    let mirror = debian_mirror(&read_sources(), codename).ok_or_else(|| {
        format!(
            "no `deb` source for suite {codename} in /etc/apt/sources.list(.d): cannot debootstrap"
        )
    })?;
    let root = scratch.join(format!("rootfs-{codename}"));
    let _ = std::fs::remove_dir_all(&root);
    let root_str = root.display().to_string();
    super::run(
        "debootstrap",
        &[
            "--variant=minbase",
            "--include=ca-certificates",
            codename,
            &root_str,
            &mirror,
        ],
    )
    .map_err(|e| format!("{e} (log: {root_str}/debootstrap/debootstrap.log)"))?;
    for dir in SLIMMED {
        empty_dir(&root.join(dir))?;
    }
    let imported = import(podman, &root, &reference);
    let _ = std::fs::remove_dir_all(&root);
    imported.map(|()| reference)
}

/// `tar -C ROOT -c . | podman import - REFERENCE`.
fn import(podman: &Podman, root: &Path, reference: &str) -> Result<(), String> {
    eprintln!(
        "xtask: tar -C {} -c . | podman import - {reference}",
        root.display()
    );
    let mut tar = crate::command("tar")
        .arg("-C")
        .arg(root)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let stdin = tar.stdout.take().map_or(Stdio::null(), Stdio::from);
    let imported = podman
        .command(&["import", "-", reference])
        .stdin(stdin)
        .status();
    let tarred = tar.wait();
    match (tarred, imported) {
        (Ok(t), Ok(i)) if t.success() && i.success() => Ok(()),
        (t, i) => Err(format!(
            "importing the base image failed: tar {t:?}, podman {i:?}"
        )),
    }
}

/// Removes what is inside `dir`, keeping `dir` itself.
fn empty_dir(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The host's release codename (`VERSION_CODENAME` in /etc/os-release), e.g. `bookworm`.
pub fn host_codename() -> Result<String, String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .map_err(|e| format!("cannot read /etc/os-release: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "/etc/os-release has no VERSION_CODENAME".to_owned())
}

/// The apt source files, as (is deb822, text): /etc/apt/sources.list, then sources.list.d's
/// `*.list` and `*.sources` in name order (apt ignores other names).
fn read_sources() -> Vec<(bool, String)> {
    let mut files = vec![(false, "/etc/apt/sources.list".into())];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => files.push((false, path)),
                Some("sources") => files.push((true, path)),
                _ => {}
            }
        }
    }
    files
        .into_iter()
        .filter_map(|(deb822, path)| Some((deb822, std::fs::read_to_string(path).ok()?)))
        .collect()
}

/// The first `deb` source (not `deb-src`, not disabled) that serves suite `codename` exactly,
/// from one-line (`deb [opts] URI SUITE COMPONENT…`) or deb822 (`Types:`/`URIs:`/`Suites:`)
/// files. `bookworm-security` and `bookworm-updates` are other suites and do not match.
pub fn debian_mirror(sources: &[(bool, String)], codename: &str) -> Option<String> {
    sources.iter().find_map(|(deb822, text)| {
        if *deb822 {
            deb822_mirror(text, codename)
        } else {
            one_line_mirror(text, codename)
        }
    })
}

fn one_line_mirror(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: `[arch=amd64 signed-by=…]`, possibly across several words.
            let mut word = uri;
            while !word.ends_with(']') {
                word = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == codename).then(|| uri.to_owned())
    })
}

fn deb822_mirror(text: &str, codename: &str) -> Option<String> {
    // Stanzas are separated by blank lines; continuation lines start with white space.
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with(char::is_whitespace))
                .find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
                })
        };
        let has = |name: &str, word: &str| {
            field(name).is_some_and(|v| v.split_whitespace().any(|w| w == word))
        };
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        (enabled && has("Types", "deb") && has("Suites", codename))
            .then(|| field("URIs")?.split_whitespace().next().map(str::to_owned))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SOURCES: &str = "Types: deb\n\
        # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
        URIs: http://deb.debian.org/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
        \n\
        Types: deb\n\
        URIs: http://deb.debian.org/debian-security\n\
        Suites: bookworm-security\n\
        Components: main\n";

    #[test]
    fn deb822_picks_the_stanza_that_serves_the_codename() {
        let sources = [(true, DEBIAN_SOURCES.to_owned())];
        assert_eq!(
            debian_mirror(&sources, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(debian_mirror(&sources, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_and_source_only_stanzas() {
        let text = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                    Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n\n\
                    Types: deb deb-src\nURIs: http://on.example/debian\nSuites: bookworm\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n Suites: trixie\n";
        let sources = [(true, text.to_owned())];
        assert_eq!(
            debian_mirror(&sources, "bookworm").as_deref(),
            Some("http://on.example/debian")
        );
        assert_eq!(
            debian_mirror(&sources, "trixie"),
            None,
            "continuation lines are not fields"
        );
    }

    #[test]
    fn one_line_format_with_and_without_options() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian bookworm main\n";
        let sources = [(false, text.to_owned())];
        assert_eq!(
            debian_mirror(&sources, "bookworm").as_deref(),
            Some("https://mirror.example/debian")
        );
    }

    #[test]
    fn the_first_file_that_serves_the_suite_wins() {
        let sources = [
            (
                false,
                "deb https://packages.example/apt cloud-sdk main\n".to_owned(),
            ),
            (true, DEBIAN_SOURCES.to_owned()),
            (
                false,
                "deb http://later.example/debian bookworm main\n".to_owned(),
            ),
        ];
        assert_eq!(
            debian_mirror(&sources, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }
}
