//! `cargo xtask ci`: everything CI checks, in order: the tools it needs, formatting (Rust and
//! the dashboard's script), lints, firmware (with the
//! model benchmark on an emulated Cortex-M4), every test including the emulator tests and the
//! server's on a private PostgreSQL, the check-in benchmark, the fuzz targets' build, the
//! power-loss matrix, and the hardware-in-the-loop scenarios on 4 emulated boards.

use crate::run::{cargo, root, step};
use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    let root = root();
    // Everything the later steps run, installed when missing and checked now, so a missing tool
    // stops the run here with its name rather than in a build half an hour in.
    crate::install::ensure("build libraries", crate::install::BUILD)?;
    crate::install::ensure("firmware toolchain", crate::install::FIRMWARE)?;
    crate::install::ensure("browser", crate::install::BROWSER)?;
    crate::install::ensure("system tools", crate::install::SYSTEM)?;
    crate::install::ensure("Node.js", crate::install::NODE)?;
    crate::postgres::ensure_installed()?;

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

    // The dashboard's script, with the formatter version web/package-lock.json pins.
    let web = root.join("web");
    if !web.join("node_modules/.bin/prettier").exists() {
        let mut npm = std::process::Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"]);
        step("npm ci (dashboard formatter)", &web, npm)?;
    }
    let mut prettier = std::process::Command::new(web.join("node_modules/.bin/prettier"));
    prettier.args(["--check", "app.js"]);
    step("prettier (web/app.js)", &web, prettier)?;

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

    // Firmware for the emulated boards (installs Debian's toolchain and QEMU when missing): every
    // binary the emulator tests boot, then the model runtime on its own benchmark firmware
    // (figures to target/bench/model.json, verdicts and output bytes checked).
    crate::firmware::build()?;
    crate::bench_model::run(&[])?;
    // Bytes over the air with deltas and compression, on variants of the agent firmware just
    // built (target/bench/ota-bytes.json).
    crate::bench_ota::measure(true)?;

    // Every test, the emulator ones included (they need the firmware just built), and the
    // server's against a real PostgreSQL as well as SQLite.
    let pg = crate::postgres::start()?;
    let mut test = cargo();
    test.env("FLEET_QEMU_TESTS", "1")
        .env("FLEET_BROWSER_TESTS", "1")
        .env("FLEET_TEST_DATABASE_URL", &pg)
        .args(["test", "--workspace"]);
    let tested = step("tests", &root, test).and_then(|()| {
        // Check-ins per second on SQLite and PostgreSQL (target/bench/server.json).
        crate::bench_server::measure(&pg, false)
    });
    crate::postgres::stop();
    tested?;

    // The fuzz crate is its own workspace; checking it keeps the targets compiling and proves
    // `artifact` and `model` build without std or alloc, as devices link them.
    let mut fuzz = cargo();
    fuzz.args(["check", "--quiet"]);
    step("fuzz targets and no_std build", &root.join("fuzz"), fuzz)?;

    // The bootloader under a power cut before every flash operation (target/bench/powerloss.json).
    crate::powerloss::run(&[])?;

    // Rollback scenarios on emulated boards behind the gateway (target/bench/hil.json); the
    // firmware is already built. A line of 4 keeps CI short; `cargo xtask hil --nodes 40` runs
    // the full line.
    crate::hil::run(&["--nodes".into(), "4".into(), "--no-build".into()])?;

    println!("ci: all steps passed");
    Ok(())
}
