//! A private PostgreSQL server for the tests: Debian's `postgresql` (installed when missing),
//! a throw-away cluster in /tmp on its own port, trust authentication on loopback. Tests
//! reach it through FLEET_TEST_DATABASE_URL and make a schema each.

use crate::run::{root, step};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

const PORT: u16 = 55432;

/// The cluster's directory.
fn dir() -> PathBuf {
    PathBuf::from("/tmp/fleet-test-pg")
}

/// The directory of Debian's PostgreSQL programs (the newest installed major version).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let dir = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", versions.last()?));
    dir.join("initdb").exists().then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL program, run as the `postgres` user when we are root (the server refuses root).
fn pg(program: &str) -> Result<Command> {
    let path = bin_dir().context("PostgreSQL programs")?.join(program);
    Ok(if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    })
}

/// Installs Debian's PostgreSQL when its programs are missing, then checks they are there.
pub fn ensure_installed() -> Result<()> {
    if bin_dir().is_none() {
        crate::install::apt(&["postgresql"])?;
    }
    if bin_dir().is_none() {
        bail!(
            "PostgreSQL: no /usr/lib/postgresql/N/bin/initdb after installing the Debian package postgresql"
        );
    }
    Ok(())
}

/// Starts a fresh cluster; returns its URL.
pub fn start() -> Result<String> {
    ensure_installed()?;
    let dir = dir();
    if dir.join("postmaster.pid").exists() {
        let mut stop = pg("pg_ctl")?;
        stop.arg("-D").arg(&dir).args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if is_root() {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        step("chown test cluster", &root(), chown)?;
    }
    let mut init = pg("initdb")?;
    init.arg("-D")
        .arg(&dir)
        .args(["-A", "trust", "-U", "fleet", "--no-sync", "-E", "UTF8"]);
    step("initdb (test PostgreSQL)", &root(), init)?;
    let mut start = pg("pg_ctl")?;
    start
        .arg("-D")
        .arg(&dir)
        .arg("-o")
        .arg(format!(
            "-p {PORT} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300",
            dir.display()
        ))
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "start"]);
    step("start test PostgreSQL", &root(), start)?;
    Ok(format!("postgres://fleet@127.0.0.1:{PORT}/postgres"))
}

/// Stops the cluster (best effort: CI's machine goes away anyway).
pub fn stop() {
    if let Ok(mut c) = pg("pg_ctl") {
        c.arg("-D").arg(dir()).args(["-m", "fast", "stop"]);
        let _ = c.output();
    }
}
