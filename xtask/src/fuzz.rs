//! `cargo xtask fuzz`: runs each cargo-fuzz target for a while (installs cargo-fuzz if missing).
//!
//! Each target reads fuzz/seeds/TARGET (committed starting inputs) and grows
//! fuzz/corpus/TARGET (ignored by git).

use crate::run::{cargo, have, root, step};
use anyhow::{Context, Result, bail};

const TARGETS: &[&str] = &["decoders", "model_loader", "protocol", "delta", "identity"];

pub fn run(args: &[String]) -> Result<()> {
    let seconds: u64 = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a number")?,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    };
    if !have("cargo-fuzz") {
        let mut install = cargo();
        install.args(["install", "--locked", "cargo-fuzz"]);
        step("install cargo-fuzz", &root(), install)?;
    }
    for target in TARGETS {
        let corpus = format!("fuzz/corpus/{target}");
        let seeds = format!("fuzz/seeds/{target}");
        std::fs::create_dir_all(root().join(&corpus))?;
        std::fs::create_dir_all(root().join(&seeds))?;
        let mut fuzz = cargo();
        // cargo-fuzz wants nightly flags; the stable compiler accepts them when bootstrapping.
        fuzz.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, &corpus, &seeds, "--"])
            .arg(format!("-max_total_time={seconds}"));
        step(&format!("fuzz {target}"), &root(), fuzz)?;
    }
    Ok(())
}
