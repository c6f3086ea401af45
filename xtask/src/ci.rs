//! `cargo xtask ci`: format, lint, test, and build the fuzz targets, in the order CI needs.

use crate::run::{cargo, root, step};
use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    let root = root();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    step("rustfmt", &root, fmt)?;

    // The firmware and fuzz workspaces are outside `cargo fmt --all`: check their files directly.
    let mut fmt_other = std::process::Command::new("rustfmt");
    fmt_other.args(["--edition", "2024", "--check"]);
    for dir in ["firmware", "fuzz"] {
        fmt_other.args(crate::run::rust_files(&root.join(dir))?);
    }
    step("rustfmt (firmware, fuzz)", &root, fmt_other)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy", &root, clippy)?;

    let mut test = cargo();
    test.args(["test", "--workspace"]);
    step("tests", &root, test)?;

    // The fuzz crate is its own workspace; checking it keeps the target compiling and proves
    // the artifact crate builds without std or alloc, as devices link it.
    let mut fuzz = cargo();
    fuzz.args(["check", "--quiet"]);
    step("fuzz targets and no_std build", &root.join("fuzz"), fuzz)?;

    // The model runtime on an emulated Cortex-M4: figures to target/bench/model.json, and the
    // device's verdicts on the three fixtures checked.
    crate::bench_model::run(&[])?;

    // The bootloader under a power cut before every flash operation (target/bench/powerloss.json).
    crate::powerloss::run(&[])?;

    println!("ci: all steps passed");
    Ok(())
}
