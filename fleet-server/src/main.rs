//! `fleet-server`: serves the device and operator APIs.
//!
//! `fleet-server serve --root root.cbor [--listen 127.0.0.1:8080] [--data ./fleet-data]
//! [--database-url URL]`. The operator token is read from DATA/operator-token (created on first
//! start, mode 0600).

use anyhow::{Context, Result};
use artifact::TrustRoot;
use clap::{Parser, Subcommand};
use fleet_server::{AppState, configure, db};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "fleet-server",
    version,
    about = "Fleet server for signed OTA updates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the device and operator APIs.
    Serve {
        /// The fleet's trust root (`fleetctl keys root`): uploads must verify against it.
        #[arg(long)]
        root: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "fleet-data")]
        data: PathBuf,
        /// `postgres://...` for PostgreSQL; SQLite in DATA/fleet.db by default.
        #[arg(long)]
        database_url: Option<String>,
    },
}

fn operator_token(data: &std::path::Path) -> Result<String> {
    let path = data.join("operator-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    let mut raw = [0u8; 24];
    getrandom::getrandom(&mut raw).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let token = hex::encode(raw);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

#[actix_web::main]
async fn main() -> Result<()> {
    let Command::Serve {
        root,
        listen,
        data,
        database_url,
    } = Cli::parse().command;
    std::fs::create_dir_all(&data).with_context(|| data.display().to_string())?;
    let root_bytes = std::fs::read(&root).with_context(|| root.display().to_string())?;
    let root = TrustRoot::from_self_signed(&root_bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    let url = database_url.unwrap_or_else(|| data.join("fleet.db").display().to_string());
    let pool = db::open(&url)?;
    let admin_token = operator_token(&data)?;
    let state = AppState {
        pool,
        data: data.clone(),
        root,
        admin_token,
    };
    println!(
        "fleet-server listening on http://{listen} (data in {}, operator token in {}/operator-token)",
        data.display(),
        data.display()
    );
    actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(actix_web::web::Data::new(state.clone()))
            .configure(configure)
    })
    .bind(&listen)
    .with_context(|| listen.clone())?
    .run()
    .await?;
    Ok(())
}
