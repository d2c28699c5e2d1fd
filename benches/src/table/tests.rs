use super::*;
use tidegate_tools::load::{handshakes, idle, latency};

fn idle(target: &str, repeat: u32, connections: usize, after: u64) -> Record {
    let result = Outcome::Idle(idle::Report {
        connections,
        rss_before_kb: 1000,
        rss_after_kb: after,
        bytes_per_conn: (after - 1000) as f64 * 1024.0 / connections as f64,
        open_s: 1.0,
    });
    Record {
        target: target.to_owned(),
        repeat,
        variant: None,
        result,
    }
}

fn latency(target: &str, repeat: u32, p50_us: f64) -> Record {
    latency_with(target, repeat, 1, p50_us)
}

fn latency_with(target: &str, repeat: u32, connections: usize, p50_us: f64) -> Record {
    let result = Outcome::Latency(latency::Report {
        connections,
        rate: 1.0,
        sent: 1,
        received: 1,
        p50_us,
        p90_us: p50_us,
        p99_us: p50_us * 2.0,
        p999_us: p50_us * 2.5,
        max_us: p50_us * 3.0,
    });
    Record {
        target: target.to_owned(),
        repeat,
        variant: None,
        result,
    }
}

fn targets() -> Vec<String> {
    ["direct", "haproxy", "tidegate"]
        .map(str::to_owned)
        .to_vec()
}

fn line<'a>(table: &'a str, label: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap()
}

#[test]
fn medians_ratios_and_pending() {
    let records = vec![
        idle("haproxy", 1, 1000, 2000),
        idle("haproxy", 2, 1000, 4000),
        idle("haproxy", 3, 1000, 3000),
        idle("haproxy", 1, 3000, 5000),
    ];
    let table = render(&records, &targets(), "haproxy");
    assert!(table.starts_with("| figure | direct | HAProxy | tidegate |\n|---|"));
    let row = line(&table, "RSS per idle WebSocket at 1k");
    assert_eq!(
        row,
        "| RSS per idle WebSocket at 1k (bytes) | pending | 2,048 (1.00×) ±50% | pending |"
    );
    let slope = line(&table, "RSS slope 1k → 3k");
    assert!(slope.contains("| 1,536 (1.00×) |"), "{slope}");
    assert!(line(&table, "RSS with 3k idle").contains("| 4.88 (1.00×) |"));
}

#[test]
fn added_latency_pairs_repeats_with_direct() {
    let records = vec![
        latency("direct", 1, 50.0),
        latency("haproxy", 1, 80.0),
        latency("direct", 2, 60.0),
        latency("haproxy", 2, 100.0),
        latency("tidegate", 1, 110.0),
    ];
    let table = render(&records, &targets(), "haproxy");
    let row = line(&table, "added round trip p50");
    assert_eq!(
        row,
        "| added round trip p50 vs direct, 1 connection (µs) | – | 35.0 (1.00×) ±14% | 60.0 (1.71×) |"
    );
}

#[test]
fn latency_rows_per_connection_count_pair_with_direct_at_the_same_count() {
    let records = vec![
        latency_with("direct", 1, 100, 50.0),
        latency_with("direct", 1, 5000, 200.0),
        latency_with("haproxy", 1, 100, 80.0),
        latency_with("haproxy", 1, 5000, 400.0),
        latency_with("tidegate", 1, 100, 70.0),
        latency_with("tidegate", 1, 5000, 300.0),
    ];
    let table = render(&records, &targets(), "haproxy");
    let small = line(&table, "added round trip p50 vs direct, 100 connections");
    assert!(
        small.ends_with("| 30.0 (1.00×) | 20.0 (0.67×) |"),
        "{small}"
    );
    let big = line(&table, "added round trip p99.9 vs direct, 5k connections");
    assert!(big.ends_with("| 500.0 (1.00×) | 250.0 (0.50×) |"), "{big}");
    let own = line(&table, "round trip p99, 5k connections");
    assert!(own.ends_with("| 800.0 (1.00×) | 600.0 (0.75×) |"), "{own}");
}

fn handshakes(target: &str, variant: &str, cpu_ms_per_1k: f64) -> Record {
    let report = handshakes::Report {
        handshakes: 1000,
        errors: 0,
        elapsed_s: 1.0,
        per_s: 1000.0,
        proxy_cpu_s: Some(cpu_ms_per_1k / 1000.0),
        cpu_ms_per_1k: Some(cpu_ms_per_1k),
        open_p50_ms: 1.0,
        open_p99_ms: 2.0,
        open_max_ms: 3.0,
    };
    Record {
        target: target.to_owned(),
        repeat: 1,
        variant: Some(variant.to_owned()),
        result: Outcome::Handshakes(report),
    }
}

#[test]
fn tls_handshakes_get_a_row_per_key_type() {
    let records = vec![
        handshakes("haproxy", "ecdsa", 400.0),
        handshakes("tidegate", "ecdsa", 300.0),
        handshakes("haproxy", "rsa", 900.0),
        handshakes("tidegate", "rsa", 990.0),
    ];
    let table = render(&records, &targets(), "haproxy");
    let ecdsa = line(
        &table,
        "proxy CPU per 1,000 TLS handshakes + upgrades, ECDSA P-256 (ms)",
    );
    assert!(
        ecdsa.ends_with("| 400.0 (1.00×) | 300.0 (0.75×) |"),
        "{ecdsa}"
    );
    let rsa = line(
        &table,
        "proxy CPU per 1,000 TLS handshakes + upgrades, RSA 2048 (ms)",
    );
    assert!(rsa.ends_with("| 900.0 (1.00×) | 990.0 (1.10×) |"), "{rsa}");
    assert!(!table.contains("| proxy CPU per 1,000 upgrades"), "{table}");
}

#[test]
fn reads_records_back() {
    let report = handshakes::Report {
        handshakes: 10,
        errors: 0,
        elapsed_s: 1.0,
        per_s: 10.0,
        proxy_cpu_s: None,
        cpu_ms_per_1k: None,
        open_p50_ms: 1.0,
        open_p99_ms: 2.0,
        open_max_ms: 3.0,
    };
    let record = Record {
        target: "nginx".into(),
        repeat: 1,
        variant: None,
        result: Outcome::Handshakes(report),
    };
    let text = serde_json::to_string(&record).unwrap();
    assert!(text.contains("\"mode\":\"handshakes\""), "{text}");
    let dir = std::env::temp_dir().join(format!("wsbench-table-{}", std::process::id()));
    std::fs::write(&dir, format!("{text}\n\n{text}\n")).unwrap();
    assert_eq!(read_records(&dir).unwrap().len(), 2);
    std::fs::write(&dir, "{}\n").unwrap();
    assert!(matches!(
        read_records(&dir),
        Err(Error::Record { line: 1, .. })
    ));
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn numbers_are_grouped() {
    assert_eq!(number(61234.6), "61,235");
    assert_eq!(number(1000.0), "1,000");
    assert_eq!(number(-1234567.0), "-1,234,567");
    assert_eq!(number(35.04), "35.0");
    assert_eq!(number(1.234), "1.23");
}
