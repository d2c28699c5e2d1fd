//! `tidegate demo` run as a user runs it, with its default knobs (cap 100 per backend, 1,000
//! connections at the peak, backends that take 5 s to boot): the scaler orders ahead of the
//! surge and the ramp, so the surge refuses at most 1 % of its peak and the ramp none.
//!
//! The real binary, its real local pool of echo-backend processes and its own load generator;
//! the test reads the summary line the demo prints when its `--duration` ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The demo's closing line, parsed.
#[derive(Debug)]
struct Summary {
    peak: u64,
    refused: u64,
    dropped: u64,
}

fn parse(line: &str) -> Option<Summary> {
    let rest = line.strip_prefix("demo done: peak ")?;
    let number_before = |word: &str| -> Option<u64> {
        let end = rest.find(word)?;
        rest[..end].split_whitespace().last()?.parse().ok()
    };
    Some(Summary {
        peak: rest.split_whitespace().next()?.parse().ok()?,
        refused: number_before(" refused")?,
        dropped: number_before(" dropped")?,
    })
}

/// Kills the demo (by its PID) if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `tidegate demo --load <load> --duration <secs>s` on free ports and returns its summary.
fn demo(load: &str, secs: u64) -> Summary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["demo", "--load", load, "--duration", &format!("{secs}s")])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tidegate demo");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(summary) = parse(&line) {
                let _ = tx.send(summary);
            }
        }
    });
    // The demo's own duration, then its graceful stop of every backend.
    let deadline = Duration::from_secs(secs + 60);
    let summary = rx.recv_timeout(deadline).unwrap_or_else(|_| {
        panic!("tidegate demo --load {load} printed no summary in {deadline:?}")
    });
    drop(running);
    summary
}

#[test]
fn the_default_surge_refuses_at_most_one_percent_of_its_peak() {
    // One pass is 120 s: ×10 growth from 24 s to 54 s, a plateau to 90 s.
    let s = demo("surge", 92);
    assert_eq!(s.peak, 1000, "the surge reached its peak: {s:?}");
    assert!(
        s.refused * 100 <= s.peak,
        "more than 1 % of the peak refused: {s:?}"
    );
    assert_eq!(s.dropped, 0, "{s:?}");
}

#[test]
fn the_default_ramp_refuses_nothing() {
    // One pass is 120 s: a linear climb to the peak at 48 s, held to 72 s.
    let s = demo("ramp", 74);
    assert_eq!(s.peak, 1000, "the ramp reached its peak: {s:?}");
    assert_eq!(s.refused, 0, "{s:?}");
    assert_eq!(s.dropped, 0, "{s:?}");
}

#[test]
fn the_summary_line_parses() {
    let s = parse(
        "demo done: peak 1000 connections open, 7 refused (0.7% of peak), 2 dropped, \
         20 backends at the end; all backends stopped",
    )
    .unwrap();
    assert_eq!((s.peak, s.refused, s.dropped), (1000, 7, 2));
}
