//! `cargo xtask firmware`: builds the Cortex-M firmware workspace with Debian's toolchain.

use crate::install;
use crate::run::{root, step};
use anyhow::Result;
use std::path::PathBuf;
use std::process::Command;

/// The firmware workspace.
pub fn dir() -> PathBuf {
    root().join("firmware")
}

/// Path of a release ELF of the firmware workspace.
pub fn elf(name: &str) -> PathBuf {
    dir()
        .join("target/thumbv7em-none-eabihf/release")
        .join(name)
}

/// Installs the toolchain if needed and builds every firmware binary (release).
pub fn build() -> Result<()> {
    install::apt(install::FIRMWARE_PACKAGES)?;
    // The rustup proxy `cargo`, run inside the firmware folder, picks Debian's toolchain from
    // rust-toolchain.toml; what the outer cargo exported would override that, so clear it.
    let mut cargo = Command::new("cargo");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO",
    ] {
        cargo.env_remove(var);
    }
    cargo.args(["build", "--release", "--quiet"]);
    step("firmware build (thumbv7em, Debian rustc)", &dir(), cargo)
}

pub fn run(_args: &[String]) -> Result<()> {
    build()
}
