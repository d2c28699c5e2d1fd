//! The `tidegate` binary: parse the command line, then hand over to the library.

use clap::Parser;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tidegate_proxy::cli::run(tidegate_proxy::cli::Cli::parse())
}
