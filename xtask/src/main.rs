//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: installs what the suite needs when missing, then runs every check and
//!   test (the README's test command; `.ci/run` calls exactly this).
//! - `cargo xtask fuzz [--seconds N]`: runs the cargo-fuzz targets (installs cargo-fuzz).
//! - `cargo xtask firmware`: builds the Cortex-M firmware with Debian's toolchain.
//! - `cargo xtask bench-model [--model PATH.tflite [--validation-set PATH.vset] [--out FILE.json]]`:
//!   model latency, instructions per MAC and accuracy on an emulated Cortex-M4.
//! - `cargo xtask bench-ota [--no-build]`: bytes over the air with firmware deltas and
//!   compressed models (target/bench/ota-bytes.json).
//! - `cargo xtask powerloss [--quick] | postgres | bench-server [--full]`: the bootloader's power-loss matrix.
//! - `cargo xtask hil [--nodes N]`: hardware-in-the-loop scenarios on emulated boards.

mod bench_model;
mod bench_ota;
mod bench_server;
mod ci;
mod firmware;
mod fuzz;
mod hil;
mod install;
mod postgres;
mod powerloss;
mod run;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "ci" => ci::run(rest),
        "fuzz" => fuzz::run(rest),
        "firmware" => firmware::run(rest),
        "bench-model" => bench_model::run(rest),
        "bench-ota" => bench_ota::run(rest),
        "powerloss" => powerloss::run(rest),
        "bench-server" => bench_server::run(rest),
        "hil" => hil::run(rest),
        "postgres" => postgres::start().map(|url| {
            println!("export FLEET_TEST_DATABASE_URL={url}");
        }),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask ci | fuzz [--seconds N] | firmware | bench-model [--model PATH.tflite [--validation-set PATH.vset] [--out FILE.json]] | bench-ota [--no-build] | powerloss [--quick] | postgres | bench-server [--full] | hil [--nodes N] [--seed S] [--no-build]"
            );
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}; try `cargo xtask help`"),
    }
}
