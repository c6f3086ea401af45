//! `fleet-server`: `serve` the device and operator APIs, `migrate` the database, or run the
//! `demo` (the server with 48 simulated devices and three staged rollouts).

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fleet_server::server::{self, Config};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "fleet-server",
    version,
    about = "Fleet server for signed OTA updates with staged rollouts gated on inference quality"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every command: flags, else environment, else the file, else defaults.
#[derive(Debug, Args)]
struct Common {
    /// TOML file with any of: listen, data, database_url, root, poll_seconds, tick_ms, workers,
    /// max_upload_bytes, read_timeout_s, tls_cert, tls_key, tls_client_ca.
    #[arg(long, env = "FLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FLEET_LISTEN")]
    listen: Option<String>,
    /// Data directory (SQLite database, artifacts, operator token) [default: fleet-data].
    #[arg(long, env = "FLEET_DATA")]
    data: Option<PathBuf>,
    /// `postgres://...` for PostgreSQL [default: SQLite in DATA/fleet.db].
    #[arg(long, env = "FLEET_DATABASE_URL")]
    database_url: Option<String>,
    /// Seconds an idle device waits between check-ins [default: 60].
    #[arg(long, env = "FLEET_POLL_SECONDS")]
    poll_seconds: Option<u32>,
    /// Milliseconds between rollout engine passes [default: 1000].
    #[arg(long, env = "FLEET_TICK_MS")]
    tick_ms: Option<u64>,
    /// HTTP worker threads [default: one per core].
    #[arg(long, env = "FLEET_WORKERS")]
    workers: Option<usize>,
    /// The largest bundle an operator may upload, in bytes [default: 67108864, 64 MiB].
    #[arg(long, env = "FLEET_MAX_UPLOAD_BYTES")]
    max_upload_bytes: Option<u64>,
    /// Seconds a client may take for its request head, or leave its body unsent [default: 10].
    #[arg(long, env = "FLEET_READ_TIMEOUT_S")]
    read_timeout_s: Option<u64>,
    /// The server's certificate chain (PEM): serve HTTPS [default: plain HTTP].
    #[arg(long, env = "FLEET_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FLEET_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) of gateways' client certificates: verified when presented.
    #[arg(long, env = "FLEET_TLS_CLIENT_CA", value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,
}

impl Common {
    fn config(self, root: Option<PathBuf>) -> Result<Config> {
        let file = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        Ok(Config {
            listen: self.listen,
            data: self.data,
            database_url: self.database_url,
            root,
            poll_seconds: self.poll_seconds,
            tick_ms: self.tick_ms,
            workers: self.workers,
            max_upload_bytes: self.max_upload_bytes,
            read_timeout_s: self.read_timeout_s,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_client_ca: self.tls_client_ca,
        }
        .or(file))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the device and operator APIs.
    #[command(
        after_help = "Example:\n  fleet-server serve --root keys/root.cbor --data /var/lib/fleet"
    )]
    Serve {
        #[command(flatten)]
        common: Common,
        /// The fleet's trust root (`fleetctl keys root`): uploads must verify against it.
        #[arg(long, env = "FLEET_ROOT")]
        root: Option<PathBuf>,
    },
    /// Run the database migrations and exit.
    #[command(
        after_help = "Example:\n  fleet-server migrate --database-url postgres://fleet@db/fleet"
    )]
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// The server with simulated devices: fresh keys, 48 devices, three staged rollouts.
    #[command(
        after_help = "Example:\n  fleet-server demo --listen 127.0.0.1:8080 --data ./fleet-data"
    )]
    Demo {
        #[command(flatten)]
        common: Common,
        /// Simulated devices.
        #[arg(long, default_value_t = 48)]
        devices: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { common, root } => {
            let config = common.config(root)?;
            let root_path = config
                .root
                .clone()
                .context("--root (or FLEET_ROOT, or root in the config file) is required")?;
            let root = server::read_root(&root_path)?;
            serve(server::prepare(config, root)?, None)
        }
        Command::Migrate { common } => {
            let config = common.config(None)?;
            std::fs::create_dir_all(config.data())?;
            fleet_server::db::open(&config.database_url())?;
            println!(
                "migrations applied to {}",
                fleet_server::db::redacted(&config.database_url())
            );
            Ok(())
        }
        Command::Demo { common, devices } => {
            let mut config = common.config(None)?;
            config.poll_seconds = config.poll_seconds.or(Some(2));
            config.tick_ms = config.tick_ms.or(Some(500));
            let data = config.data();
            fleet_server::demo::reset_data(&data)?;
            let (key, root) = fleet_server::demo::keys(&data)?;
            let prepared = server::prepare(config, root.clone())?;
            serve(prepared, Some((key, root, devices)))
        }
    }
}

type Demo = (ed25519_dalek::SigningKey, artifact::TrustRoot, usize);

fn serve(p: server::Prepared, demo: Option<Demo>) -> Result<()> {
    let data = p.config.data();
    let listen = p.config.listen();
    actix_web::rt::System::new().block_on(async move {
        let scheme = if p.tls.is_some() { "https" } else { "http" };
        // The demo's devices trust the certificates the server presents.
        let demo_ca = p.config.tls_cert.clone().filter(|_| p.tls.is_some());
        let (running, addr) = server::bind(p.state, &listen, p.config.workers, p.tls)?;
        let base = format!("{scheme}://{addr}");
        println!(
            "fleet-server listening on {base}: dashboard {base}/ (sign in with the operator token), API {base}/api/openapi.json, metrics {base}/metrics; data in {}, operator token in {}",
            data.display(),
            data.join("operator-token").display()
        );
        if let Some((key, root, devices)) = demo {
            let token = p.admin_token.clone();
            std::thread::spawn(move || {
                let ca = demo_ca.as_deref();
                if let Err(e) = fleet_server::demo::run(&base, ca, &token, &key, root, devices) {
                    eprintln!("demo: {e:#}");
                }
            });
        }
        running.await.context("HTTP server")
    })
}
