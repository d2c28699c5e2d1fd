//! The `tidegate` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use tidegate_common::telemetry::{self, LogFormat};
use tidegate_proxy::cli::{Cli, Command};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Proxy(args) => {
            let config = match args.resolve() {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            telemetry::init(config.log_format);
            match tidegate_proxy::server::prepare(config) {
                Ok(mut prepared) => {
                    if let Some(path) = args.config.clone() {
                        let reload = move || args.resolve();
                        if let Err(e) = prepared.watch_config(path, Box::new(reload)) {
                            return fail(&e);
                        }
                    }
                    tracing::info!(traffic = %prepared.traffic_addr, admin = %prepared.admin_addr, "tidegate proxy starting");
                    prepared.run_until_signal();
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { file } => match tidegate_proxy::config::load_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::EchoBackend { listen } => {
            telemetry::init(LogFormat::Text);
            tidegate_proxy::echo::run_blocking(listen)
        }
        Command::Demo(args) => {
            // The load lines and the scaler's decisions; the rest at RUST_LOG=info if wanted.
            let quiet = "warn,tidegate_proxy::scale=info";
            telemetry::init_with_default(LogFormat::Text, quiet);
            match tidegate_proxy::demo::run(&args.plan()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Loadgen(args) => match tidegate_proxy::loadgen::run_cli(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Simulate(args) => match tidegate_scaler::sim::cli::run(&args) {
            Ok(table) => {
                println!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tidegate: {e}");
    ExitCode::FAILURE
}
