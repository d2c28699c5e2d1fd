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

    // A bad file is refused (exit 1); its error text.
    let bad = dir.path().join("bad.yaml");
    let refused = |yaml: &str| {
        std::fs::write(&bad, yaml).unwrap();
        let (code, _, err) = tidegate(&["check-config", bad.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        err
    };
    let err = refused("backends:\n  static: [127.0.0.1:9001]\nqueue_timeout: 2 parsecs\n");
    assert!(
        err.contains("bad.yaml") && err.contains("line 3") && err.contains("invalid duration"),
        "{err}"
    );
    // The parser's message and its snippet of the file, once (not again as the error's cause).
    assert_eq!(err.matches("--> ").count(), 1, "said once: {err}");

    // A value out of range, and a field the policy no longer has: each named once.
    let err = refused("backends:\n  static: [127.0.0.1:9001]\nmax_connections_per_backend: 0\n");
    assert_eq!(
        err.matches("max_connections_per_backend").count(),
        1,
        "{err}"
    );
    let err = refused(
        "backends:\n  static: [127.0.0.1:9001]\nscaler:\n  policy:\n    trend_window: 60s\n",
    );
    assert!(
        err.contains("line 5") && err.contains("trend_shortest"),
        "{err}"
    );
    assert_eq!(err.matches("--> ").count(), 1, "said once: {err}");

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

#[test]
fn check_config_reads_the_tls_pairs_and_names_the_wrong_file() {
    let ca = crate::support::tls::TestCa::new();
    let (good, other) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test"]));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, other_key) = (
        write("tls.crt", &good.chain_pem),
        write("tls.key", &good.key_pem),
        write("other.key", &other.key_pem),
    );
    let config = |key: &str, hosts: &str| {
        write(
            "c.yaml",
            &format!(
                "tls:\n  cert_file: {cert}\n  key_file: {key}\n  certificates:\n    - {{hosts: [{hosts}], cert_file: {cert}, key_file: {key}}}\n"
            ),
        )
    };
    let (code, out, err) = tidegate(&["check-config", &config(&key, "a.test")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tls certificate `default`") && out.contains("expires"),
        "{out}"
    );
    assert!(out.contains("tls certificate `a.test`"), "{out}");

    let (code, _, err) = tidegate(&["check-config", &config(&other_key, "a.test")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("other.key") && err.contains("does not belong"),
        "{err}"
    );

    let (code, _, err) = tidegate(&["check-config", &config(&key, "c.test")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`c.test`") || err.contains("does not cover c.test"),
        "{err}"
    );

    std::fs::remove_file(&cert).unwrap();
    let (code, _, err) = tidegate(&["check-config", &config(&key, "a.test")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tls.crt") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn the_tls_overlay_config_is_valid_and_reads_the_mounted_secret() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/overlays/tls");
    let text = std::fs::read_to_string(dir.join("configmap-patch.yaml")).unwrap();
    let cm: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    let c =
        tidegate_proxy::config::parse(config, "deploy/overlays/tls/configmap-patch.yaml").unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.listen.map(|a| a.port()), Some(8443));
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    for file in [&tls.cert_file, &tls.key_file] {
        let mount = file.parent().unwrap().display().to_string();
        assert!(
            kustomization.contains(&format!("mountPath: {mount}")),
            "{mount} is not mounted"
        );
    }
    assert!(kustomization.contains("containerPort: 8443"));
}
