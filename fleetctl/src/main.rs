//! `fleetctl`: the operator's command line (keys, artifacts; rollouts come with the server).

mod artifact_cmd;
mod keys_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Signed OTA updates for fleets of ML microcontrollers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signing keys and trust roots.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Sign, verify and inspect artifact bundles.
    #[command(subcommand)]
    Artifact(artifact_cmd::ArtifactCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(c) => keys_cmd::run(c),
        Command::Artifact(c) => artifact_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, whole cause chain, no backtrace: scripts and people both read this.
            eprintln!("fleetctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
