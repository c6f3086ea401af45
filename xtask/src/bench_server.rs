//! `cargo xtask bench-server [--full]`: check-ins per second and latency at 1 000 and 10 000
//! simulated devices on SQLite and PostgreSQL (target/bench/server.json). CI measures 3 s per
//! run; `--full` 20 s.

use crate::run::{cargo, root, step};
use anyhow::Result;

/// Runs the benchmark against the PostgreSQL at `pg`.
pub fn measure(pg: &str, full: bool) -> Result<()> {
    let mut bench = cargo();
    bench
        .env("FLEET_TEST_DATABASE_URL", pg)
        .args(["bench", "-p", "fleet-server", "--bench", "checkin", "--"])
        .args(["--seconds", if full { "20" } else { "3" }]);
    step("check-in benchmark", &root(), bench)
}

pub fn run(args: &[String]) -> Result<()> {
    let full = args.iter().any(|a| a == "--full");
    crate::install::ensure("build libraries", crate::install::BUILD)?;
    let pg = crate::postgres::start()?;
    let measured = measure(&pg, full);
    crate::postgres::stop();
    measured
}
