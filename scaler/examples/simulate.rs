//! `tidegate simulate` without the proxy: the same flags and outputs, built from this crate
//! alone, so a change to a policy can be tried on a trace in seconds rather than after a build
//! of the proxy and pingora.
//!
//! ```text
//! cargo run --release -p tidegate-scaler --example simulate -- \
//!     --trace gen:sawtooth:1004 --first-seed 1004 --seeds 1 --boot-delay 120s \
//!     --policies tidegate,HPA-prom,Oracle-feasible --out /tmp/saw
//! ```

use clap::Parser;
use tidegate_scaler::sim::cli::{SimulateArgs, run};

/// Compare scaling policies on a demand trace in the simulator.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn main() {
    match run(&Cli::parse().args) {
        Ok(table) => println!("{table}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
