//! Installs what the suite needs when it is missing (Debian packages), then checks that every
//! program the suite runs is really there, so `cargo xtask ci` works on a fresh machine and a
//! missing tool stops the run at once, named with its package, instead of deep in a build.

use crate::run::{root, step};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A program the suite runs and the Debian package that provides it.
#[derive(Clone, Copy)]
pub struct Tool {
    /// A name looked up on PATH, or an absolute path (for Debian's Rust, which the rustup
    /// proxy reaches through firmware/rust-toolchain.toml rather than PATH).
    pub program: &'static str,
    pub package: &'static str,
}

const fn tool(program: &'static str, package: &'static str) -> Tool {
    Tool { program, package }
}

/// Debian's Rust (which can build `core` for Cortex-M), its linker (named in
/// firmware/.cargo/config.toml), ARM binutils and QEMU.
pub const FIRMWARE: &[Tool] = &[
    tool("/usr/bin/rustc", "rustc-web"),
    tool("/usr/bin/cargo", "cargo-web"),
    tool(
        "/usr/lib/rustlib/src/rust/library/core/Cargo.toml",
        "rust-web-src",
    ),
    tool("ld.lld-22", "lld-22"),
    tool("qemu-system-arm", "qemu-system-arm"),
    tool("arm-none-eabi-objcopy", "binutils-arm-none-eabi"),
    tool("arm-none-eabi-size", "binutils-arm-none-eabi"),
    tool("arm-none-eabi-nm", "binutils-arm-none-eabi"),
    // Sizes by source crate (`firmware::code_by_source`) read the line tables with it.
    tool("arm-none-eabi-addr2line", "binutils-arm-none-eabi"),
];

/// What the workspace's own build links besides Rust crates: Debian's OpenSSL (headers,
/// `libssl.so`, `openssl.pc`), which the bundled libpq of the fleet server uses for
/// PostgreSQL's `sslmode`, found through pkg-config (openssl-sys's build script). Without it the
/// build stops deep in openssl-sys; checked here, it stops at once with the package's name.
pub const BUILD: &[Tool] = &[
    tool("/usr/include/openssl/ssl.h", "libssl-dev"),
    tool("pkg-config", "pkgconf"),
];

/// Debian's headless Chromium and its WebDriver, for the dashboard's tests.
pub const BROWSER: &[Tool] = &[
    tool("chromium", "chromium"),
    tool("chromedriver", "chromium-driver"),
];

/// Node.js and npm, which install the dashboard's formatter (web/package.json).
pub const NODE: &[Tool] = &[tool("node", "nodejs"), tool("npm", "nodejs")];

/// Programs the tests and xtask start besides those: timeouts around QEMU, the gateway's
/// serial-port and signal tests, running PostgreSQL as its own user.
pub const SYSTEM: &[Tool] = &[
    tool("timeout", "coreutils"),
    tool("stty", "coreutils"),
    tool("kill", "procps"),
    tool("runuser", "util-linux"),
];

/// Whether a Debian package is installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the packages that are not installed yet, with one `apt-get update` first.
pub fn apt(packages: &[&str]) -> Result<()> {
    let mut missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    missing.sort();
    missing.dedup();
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

/// Where a program is: an absolute path if it exists, else the first match on PATH.
fn locate(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.is_absolute() {
        return path.exists().then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The packages that own a file, as dpkg recorded it. With Debian's merged /usr a program
/// found in /usr/bin may be recorded under /bin, and a path may run through a link the package
/// made, so each spelling is asked.
fn owners(path: &Path) -> Vec<String> {
    let mut spellings = vec![path.to_path_buf()];
    spellings.extend(std::fs::canonicalize(path));
    if let Ok(rest) = path.strip_prefix("/usr") {
        spellings.push(Path::new("/").join(rest));
    } else if path.starts_with("/bin") || path.starts_with("/sbin") || path.starts_with("/lib") {
        spellings.push(Path::new("/usr").join(path.strip_prefix("/").unwrap_or(path)));
    }
    spellings
        .iter()
        .filter_map(|p| Command::new("dpkg-query").arg("-S").arg(p).output().ok())
        .filter(|o| o.status.success())
        .flat_map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .filter_map(|l| l.split_once(": ").map(|(pkgs, _)| pkgs.to_owned()))
                .flat_map(|pkgs| {
                    pkgs.split(", ")
                        .map(|p| p.split(':').next().unwrap_or(p).to_owned())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Installs the packages of `tools` that are missing, then checks each program: one that is
/// still not there is an error naming it and its package; one that some other file shadows
/// (not owned by its package, say a hand-made link) is reported, since a fresh machine would
/// not have it.
pub fn ensure(what: &str, tools: &[Tool]) -> Result<()> {
    let packages: Vec<&str> = tools.iter().map(|t| t.package).collect();
    apt(&packages)?;
    let mut missing = Vec::new();
    for t in tools {
        match locate(t.program) {
            None => missing.push(format!("{} (Debian package {})", t.program, t.package)),
            Some(path) => {
                if !owners(&path).iter().any(|o| o == t.package) {
                    println!(
                        "warning: {what}: {} is not from the package {}; a fresh machine has only what the package installs",
                        path.display(),
                        t.package
                    );
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "{what}: missing after the install step: {}",
            missing.join(", ")
        );
    }
    println!("==> {what}: {} tools present", tools.len());
    Ok(())
}
