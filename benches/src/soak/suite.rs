//! Runs the plan's scenarios one after the other, prints each one's figures as it ends, and
//! writes the report with its plots.

use std::time::SystemTime;

use tokio::time::Instant;

use super::plan::Name;
use super::report::{self, Run, Section};
use super::scenario::{blackhole, descriptors, edges, hold, kills, outage, reloads, slowloris};
use super::{Context, Error, Figure, Outcome, Verdict};

/// Runs every scenario of the plan and writes `soak.md` into `ctx.out`; `command` and
/// `version` go into its header.
pub async fn run(ctx: &Context, command: String, version: String) -> Result<Run, Error> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let load_start = report::load_average();
    let mut sections = Vec::new();
    for &name in &ctx.plan.only {
        eprintln!("[soak] {} …", name.title());
        let t = Instant::now();
        let outcome = run_one(ctx, name).await.unwrap_or_else(|e| Outcome {
            figures: vec![Figure::harness_error(&e)],
            plots: Vec::new(),
        });
        print(&name.title(), &outcome);
        sections.push(Section {
            title: name.title(),
            outcome,
            elapsed: t.elapsed(),
        });
    }
    let run = Run {
        command,
        started,
        elapsed: clock.elapsed(),
        load: (load_start, report::load_average()),
        version,
        sections,
    };
    let path = ctx.out.join("soak.md");
    std::fs::write(&path, report::render(&run)).map_err(|e| Error::Write {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    eprintln!("[soak] wrote {}", path.display());
    Ok(run)
}

async fn run_one(ctx: &Context, name: Name) -> Result<Outcome, Error> {
    match name {
        Name::Hold => hold::run(ctx).await,
        Name::Kills => kills::run(ctx).await,
        Name::Blackhole => blackhole::run(ctx).await,
        Name::Reloads => reloads::run(ctx).await,
        Name::Slowloris => slowloris::run(ctx).await,
        Name::Descriptors => descriptors::run(ctx).await,
        Name::Outage => outage::run(ctx).await,
        Name::Edges => edges::run(ctx).await,
    }
}

fn print(title: &str, outcome: &Outcome) {
    for f in &outcome.figures {
        let verdict = match &f.verdict {
            Verdict::Pass => "pass".to_owned(),
            Verdict::Fail => "FAIL".to_owned(),
            Verdict::Skipped(why) => format!("skipped: {why}"),
            Verdict::Info => "info".to_owned(),
        };
        eprintln!("[soak] {title} | {} | {} | {verdict}", f.name, f.value);
    }
}
