//! The `gateway` binary: serves device links (a TCP listener for QEMU boards, serial ports for
//! real ones) for a fleet server until SIGTERM or SIGINT.

use clap::Parser;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

/// Edge gateway between devices on serial links and the fleet server.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TCP address for device links (QEMU connects here); port 0 picks a free one.
    #[arg(long, env = "FLEET_GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Base URL of the fleet server.
    #[arg(long, env = "FLEET_GATEWAY_SERVER")]
    server: String,
    /// State directory (release cache, report spool, stats).
    #[arg(long, env = "FLEET_GATEWAY_DATA")]
    data: PathBuf,
    /// Serial port of a real board (repeatable; from the environment: comma-separated).
    #[arg(long, env = "FLEET_GATEWAY_SERIAL", value_delimiter = ',')]
    serial: Vec<PathBuf>,
    /// CA certificates (PEM) of an https:// server, trusted instead of the public roots.
    #[arg(long, env = "FLEET_GATEWAY_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// This gateway's client certificate chain (PEM), presented to the server (mTLS).
    #[arg(
        long,
        env = "FLEET_GATEWAY_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(
        long,
        env = "FLEET_GATEWAY_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// Timeout of a request to the server, in seconds.
    #[arg(long, env = "FLEET_GATEWAY_TIMEOUT_S", default_value_t = 8)]
    timeout_s: u64,
    /// How long an idle board's long-poll check-in may wait at the server, in seconds (0: off).
    #[arg(long, env = "FLEET_GATEWAY_LONG_POLL_S", default_value_t = 30)]
    long_poll_s: u64,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.listen.is_none() && cli.serial.is_empty() {
        anyhow::bail!("nothing to serve: give --listen and/or --serial");
    }
    // Signals are caught before the gateway says it is ready: a harness that stops it right
    // after the ready line still gets a clean exit with stats written.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        let _in_runtime = signals.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let mut config = gateway::Config::new(&cli.server, cli.data);
    config.listen = cli.listen;
    config.serial = cli.serial;
    config.request_timeout = std::time::Duration::from_secs(cli.timeout_s.max(1));
    config.long_poll = std::time::Duration::from_secs(cli.long_poll_s);
    config.ca_file = cli.ca_file;
    config.client_cert = cli.client_cert.zip(cli.client_key);
    let gw = gateway::spawn(config)?;
    let mut out = std::io::stdout().lock();
    match gw.addr() {
        Some(addr) => writeln!(out, "gateway: listening on {addr}")?,
        None => writeln!(out, "gateway: listening on serial ports only")?,
    }
    out.flush()?;
    drop(out);
    signals.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    let stats = gw.shutdown();
    eprintln!(
        "{}",
        serde_json::json!({"event": "gateway_exit", "stats": stats})
    );
    Ok(())
}
