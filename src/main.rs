//! The `yiflow` binary: parses arguments, sets up logging, runs the command, maps the outcome to an
//! exit status (0 success, 1 a stage failed, 2 invalid recipe or usage, 130 interrupted).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The supervisor and in-process stages must stay lean: no logging set-up, no runtime.
    match cli.command {
        Command::Supervise { command } => return exit(yiflow_engine::supervise(&command)),
        Command::ExecStage => return exit(commands::exec_stage()),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    exit(commands::dispatch(cli.command))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
