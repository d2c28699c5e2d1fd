//! The binary's command line: `check-config` exit codes and messages, `--help` texts.

use std::process::Command;

fn tidegate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn check_config_accepts_a_valid_file_and_names_the_field_and_line_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "backends:\n  static: [127.0.0.1:9001]\nqueue_timeout: 2s\n",
    )
    .unwrap();
    let (code, out, _) = tidegate(&["check-config", good.to_str().unwrap()]);
    assert_eq!((code, out.trim().ends_with("ok")), (0, true));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "backends:\n  static: [127.0.0.1:9001]\nqueue_timeout: 2 parsecs\n",
    )
    .unwrap();
    let (code, _, err) = tidegate(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml") && err.contains("line 3") && err.contains("invalid duration"),
        "{err}"
    );

    let (code, _, err) = tidegate(&["check-config", "/nonexistent/tidegate.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/tidegate.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn proxy_refuses_conflicting_flags_with_a_clear_error() {
    let (code, _, err) = tidegate(&["proxy", "--max-connections-per-backend", "0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("max_connections_per_backend") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn every_subcommand_help_states_defaults() {
    let (code, out, _) = tidegate(&["proxy", "--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--listen",
        "default: 127.0.0.1:8080",
        "--max-connections-per-backend",
        "default: 1000",
    ] {
        assert!(
            out.contains(needle),
            "proxy --help lacks {needle:?}:\n{out}"
        );
    }
    let (_, out, _) = tidegate(&["echo-backend", "--help"]);
    assert!(out.contains("default: 127.0.0.1:9001"), "{out}");
}
