//! `fleet-sim`: enrols N virtual devices with a running fleet server and runs them until
//! interrupted, printing a status line every few seconds.

use clap::Parser;
use fleet_sim::{Faults, Fleet, operator::Operator};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "fleet-sim",
    version,
    about = "Virtual devices (the real agent over a simulated flash) for a fleet server",
    after_help = "Example:\n  fleet-sim --server http://127.0.0.1:8080 --token $(cat fleet-data/operator-token) \\\n    --root root.cbor --devices 40 --lines 4 --slow-every 10 --slowdown 3"
)]
struct Cli {
    #[arg(long, env = "FLEET_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// CA certificates (PEM) of an https:// server, trusted instead of the public roots.
    #[arg(long, env = "FLEET_CA_FILE", value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// Operator token (to enrol the devices).
    #[arg(long, env = "FLEET_TOKEN")]
    token: String,
    /// The fleet's trust root: the devices verify every release against it.
    #[arg(long)]
    root: std::path::PathBuf,
    #[arg(long, default_value_t = 40)]
    devices: usize,
    /// Device ids are PREFIX-NN.
    #[arg(long, default_value = "sim")]
    prefix: String,
    #[arg(long, default_value = "mps2-an386")]
    board: String,
    /// Devices are spread over this many tags line-1..line-N.
    #[arg(long, default_value_t = 4)]
    lines: usize,
    /// Every Nth device is of a slower class (0: none).
    #[arg(long, default_value_t = 0)]
    slow_every: usize,
    /// How much slower that class is.
    #[arg(long, default_value_t = 3)]
    slowdown: u64,
    /// Chance that a chunk answer is lost, per mille.
    #[arg(long, default_value_t = 0)]
    link_cut_per_mille: u16,
    /// Chance per exchange of a power cut within the next flash operations, per mille.
    #[arg(long, default_value_t = 0)]
    reset_per_mille: u16,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bytes = std::fs::read(&cli.root)?;
    let root = artifact::TrustRoot::from_self_signed(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.root.display()))?;
    let ca = cli.ca_file.as_deref();
    let op = Operator::with_ca(&cli.server, &cli.token, ca)?;
    let fleet = Fleet::with_ca(&cli.server, root, ca)?;
    let board: &'static str = Box::leak(cli.board.into_boxed_str());
    let (slow_every, slowdown) = (cli.slow_every, cli.slowdown);
    fleet_sim::enroll_and_start_on(
        &fleet,
        &op,
        &cli.prefix,
        cli.devices,
        cli.lines,
        board,
        Faults {
            link_cut_per_mille: cli.link_cut_per_mille,
            reset_per_mille: cli.reset_per_mille,
            seed: cli.seed,
        },
        |i| {
            if slow_every > 0 && (i + 1) % slow_every == 0 {
                slowdown
            } else {
                1
            }
        },
    )?;
    println!(
        "{} virtual devices running against {}",
        cli.devices, cli.server
    );
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let status = fleet.status();
        let mut versions = std::collections::BTreeMap::<String, usize>::new();
        for s in status.values() {
            *versions
                .entry(s.model_version.clone().unwrap_or_else(|| "none".into()))
                .or_default() += 1;
        }
        let cuts: u32 = status.values().map(|s| s.power_cuts).sum();
        println!("models {versions:?}, power cuts {cuts}");
    }
}
