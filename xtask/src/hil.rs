//! `cargo xtask hil [--nodes N] [--seed S] [--no-build]`: the hardware-in-the-loop scenarios on
//! N emulated boards (QEMU mps2-an386, the real bootloader and agent firmware) behind the
//! gateway and the fleet server; results to target/bench/hil.json.

use crate::run::{cargo, root, step};
use anyhow::Result;

pub fn run(args: &[String]) -> Result<()> {
    let root = root();
    let (build, args): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.as_str() == "--no-build");
    if build.is_empty() {
        crate::firmware::build()?;
    }
    crate::install::ensure("build libraries", crate::install::BUILD)?;
    let mut bins = cargo();
    bins.args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "fleet-server",
        "-p",
        "gateway",
        "-p",
        "hil",
    ]);
    step("server, gateway and harness (release)", &root, bins)?;
    let mut hil = std::process::Command::new(root.join("target/release/hil"));
    hil.args(args);
    step("hardware-in-the-loop scenarios", &root, hil)
}
