//! Installs what the suite needs when it is missing (Debian packages), so `cargo xtask ci`
//! works on a fresh machine.

use crate::run::{root, step};
use anyhow::Result;
use std::process::Command;

/// Whether a Debian package is installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the packages that are not installed yet, with one `apt-get update` first.
pub fn apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    step("apt-get update", &root(), update)?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing);
    step(
        &format!("apt-get install {}", missing.join(" ")),
        &root(),
        install,
    )
}

/// Debian's Rust (which can build `core` for Cortex-M), its linker, ARM binutils and QEMU.
pub const FIRMWARE_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "lld-22",
    "qemu-system-arm",
    "binutils-arm-none-eabi",
];
