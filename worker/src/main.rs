//! `yiflow-worker`: the process the engine starts for the stage kinds whose tensor work needs
//! LibTorch, so the `yiflow` binary itself never links it (DESIGN.md, "Two binaries").

mod bench_train;
mod cli;
mod cuda;
mod doctor;
mod exec;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
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
        Command::BenchTrain(args) => match bench_train::bench_train(&args, cuda::load) {
            Ok(report) if args.json => match serde_json::to_string(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("cannot write the report as JSON: {e}");
                    ExitCode::FAILURE
                }
            },
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::ExecStage => match exec::exec_stage_from_env(cuda::load) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}
