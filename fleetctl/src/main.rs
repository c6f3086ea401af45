//! `fleetctl`: the operator's command line: keys and signed artifacts offline; devices,
//! artifacts and staged rollouts on a fleet server.

mod artifact_cmd;
mod connection;
mod devices_cmd;
mod keys_cmd;
mod rollout_cmd;
mod units;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Signed OTA updates for fleets of ML microcontrollers",
    after_help = "The server and token come from --server/--token, else FLEET_SERVER/FLEET_TOKEN, else a profile of the config file:\n\n  default = \"line\"\n  [profiles.line]\n  server = \"http://127.0.0.1:8080\"\n  token = \"...\"\n\nErrors print one line on stderr and exit 1."
)]
struct Cli {
    #[command(flatten)]
    connection: connection::ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signing keys and trust roots.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Sign, verify, inspect, push and list artifact bundles.
    #[command(subcommand)]
    Artifact(artifact_cmd::ArtifactCommand),
    /// Devices of the fleet.
    #[command(subcommand)]
    Devices(devices_cmd::DevicesCommand),
    /// Staged rollouts.
    #[command(subcommand)]
    Rollout(rollout_cmd::RolloutCommand),
    /// Print shell completions.
    ///
    /// Example: fleetctl completions bash > /etc/bash_completion.d/fleetctl
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let connection = cli.connection;
    let result = match cli.command {
        Command::Keys(c) => keys_cmd::run(c),
        Command::Artifact(c) if c.is_remote() => connection
            .client()
            .and_then(|client| artifact_cmd::run_remote(c, &client)),
        Command::Artifact(c) => artifact_cmd::run(c),
        Command::Devices(c) => connection
            .client()
            .and_then(|client| devices_cmd::run(c, &client))
            .map(|()| ExitCode::SUCCESS),
        Command::Rollout(c) => connection
            .client()
            .and_then(|client| rollout_cmd::run(c, &client)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "fleetctl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
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
