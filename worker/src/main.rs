//! `yiflow-worker`: the process the engine starts for the stage kinds whose tensor work needs
//! LibTorch, so the `yiflow` binary itself never links it (DESIGN.md, "Two binaries").

mod bench_checkpoint;
mod bench_train;
mod cli;
mod cuda;
mod doctor;
mod exec;

use std::fmt::Display;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::doctor::Doctor;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Doctor => {
            let doctor = Doctor::examine(cuda::load());
            print!("{doctor}");
            if doctor.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::BenchTrain(args) => report(bench_train::bench_train(&args, cuda::load), args.json),
        Command::BenchCheckpoint(args) => report(
            bench_checkpoint::bench_checkpoint(&args, cuda::load),
            args.json,
        ),
        Command::ExecStage => match exec::exec_stage_from_env(cuda::load) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints a benchmark's result as a line of text or, with `json`, one JSON object.
fn report<R: Serialize + Display, E: Display>(result: Result<R, E>, json: bool) -> ExitCode {
    let line = match result {
        Ok(r) if json => {
            serde_json::to_string(&r).map_err(|e| format!("cannot write the report as JSON: {e}"))
        }
        Ok(r) => Ok(r.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match line {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
