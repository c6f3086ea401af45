//! `cargo xtask firmware`: builds the Cortex-M firmware workspace with Debian's toolchain,
//! makes raw binaries of the test applications, and writes target/bench/firmware-size.json.

use crate::install;
use crate::run::{root, step};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The bootloader binaries, one per board (built with the size-optimised `boot` profile).
pub const BOOTLOADERS: &[&str] = &["boot-mps2", "boot-nrf52840"];
/// Test applications the QEMU tests sign and boot.
pub const TEST_APPS: &[&str] = &["app-confirm", "app-reset", "app-hang"];

/// The firmware workspace.
pub fn dir() -> PathBuf {
    root().join("firmware")
}

/// Path of a firmware ELF.
pub fn elf(name: &str) -> PathBuf {
    let profile = if BOOTLOADERS.contains(&name) {
        "boot"
    } else {
        "release"
    };
    dir()
        .join("target/thumbv7em-none-eabihf")
        .join(profile)
        .join(name)
}

/// The trust root the test bootloaders carry (a fixed test key; see powerloss::device).
pub fn test_root() -> PathBuf {
    root().join("target/test-keys/root.cbor")
}

/// Raw binary (`objcopy -O binary`) of a firmware ELF, next to it as NAME.bin.
fn raw_binary(name: &str) -> Result<PathBuf> {
    let elf = elf(name);
    let bin = elf.with_extension("bin");
    let mut objcopy = Command::new("arm-none-eabi-objcopy");
    objcopy.args(["-O", "binary"]).arg(&elf).arg(&bin);
    step(&format!("objcopy {name}"), &root(), objcopy)?;
    Ok(bin)
}

/// `cargo` for the firmware workspace: the rustup proxy, run inside the firmware folder, picks
/// Debian's toolchain from rust-toolchain.toml; what the outer cargo exported would override
/// that, so it is cleared.
fn firmware_cargo() -> Command {
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
    cargo
}

/// Installs the toolchain if needed and builds every firmware binary, with the test trust root
/// baked into the bootloaders.
pub fn build() -> Result<()> {
    install::apt(install::FIRMWARE_PACKAGES)?;
    let root_doc = test_root();
    std::fs::create_dir_all(root_doc.parent().context("root path")?)?;
    std::fs::write(&root_doc, powerloss::device::signed_trust_root())?;

    let mut cargo = firmware_cargo();
    cargo
        .env("FLEET_TRUST_ROOT", &root_doc)
        .args(["build", "--release", "--quiet", "--workspace"]);
    for boot in BOOTLOADERS {
        cargo.args(["--exclude", boot]);
    }
    step("firmware build (thumbv7em, Debian rustc)", &dir(), cargo)?;

    let mut boot = firmware_cargo();
    boot.env("FLEET_TRUST_ROOT", &root_doc)
        .args(["build", "--profile", "boot", "--quiet"]);
    for b in BOOTLOADERS {
        boot.args(["-p", b]);
    }
    step("bootloaders (size profile)", &dir(), boot)?;

    for app in TEST_APPS {
        raw_binary(app)?;
    }
    write_sizes()
}

/// target/bench/firmware-size.json: each bootloader's size (text + rodata + data).
fn write_sizes() -> Result<()> {
    let mut boards = serde_json::Map::new();
    let mut largest = 0u64;
    for b in BOOTLOADERS {
        let out = Command::new("arm-none-eabi-size")
            .arg(elf(b))
            .output()
            .context("arm-none-eabi-size")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // Berkeley format: text (with rodata and vectors), data, bss.
        let bytes: u64 = text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .take(2)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        println!("{b}: {bytes} bytes (text + rodata + data), target 32768");
        largest = largest.max(bytes);
        boards.insert((*b).to_owned(), bytes.into());
    }
    let doc = serde_json::json!({ "bootloader_bytes": largest, "bootloaders": boards, "target_bytes": 32 * 1024 });
    let path = root().join("target/bench/firmware-size.json");
    std::fs::create_dir_all(path.parent().context("bench dir")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

pub fn run(_args: &[String]) -> Result<()> {
    build()
}
