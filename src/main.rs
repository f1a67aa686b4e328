use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = newsletter::cli::Cli::parse();
    ExitCode::from(newsletter::run(&cli).code())
}
