//! `cargo xtask powerloss [--quick]`: the bootloader's power-loss matrix (host simulator),
//! printed and written to target/bench/powerloss.json.

use crate::run::{cargo, root, step};
use anyhow::Result;

pub fn run(args: &[String]) -> Result<()> {
    let json = root().join("target/bench/powerloss.json");
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "powerloss",
        "--",
        "--json",
    ])
    .arg(&json)
    .args(args);
    step("power-loss matrix", &root(), cmd)
}
