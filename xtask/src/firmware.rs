//! `cargo xtask firmware`: builds the Cortex-M firmware workspace with Debian's toolchain,
//! makes raw binaries of the test applications, and writes target/bench/firmware-size.json.

use crate::install;
use crate::run::{root, step};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testkit::qemu::{self, Options};

/// The bootloader binaries, one per board (built with the size-optimised `boot` profile).
pub const BOOTLOADERS: &[&str] = &["boot-mps2", "boot-nrf52840", "boot-stm32l4r5"];
/// Everything built for size as devices carry it: the bootloaders and the agent.
const SIZE_BUILDS: &[&str] = &["boot-mps2", "boot-nrf52840", "boot-stm32l4r5", "agent-size"];
/// The real boards' agent firmware, each built alone: their HALs bring an interrupt table
/// (cortex-m-rt's `device`) and a time driver tick rate, which must not reach another package.
const BOARD_AGENTS: &[&str] = &["agent-nrf52840", "agent-stm32l4r5"];
/// The agent firmware of each board, by the board's name in firmware-size.json.
const AGENTS: &[(&str, &str)] = &[
    ("mps2-an386", "agent-mps2"),
    ("nrf52840", "agent-nrf52840"),
    ("stm32l4r5", "agent-stm32l4r5"),
];
/// Test applications the QEMU tests sign and boot.
pub const TEST_APPS: &[&str] = &["app-confirm", "app-reset", "app-hang"];

/// The firmware workspace.
pub fn dir() -> PathBuf {
    root().join("firmware")
}

/// Path of a firmware ELF.
pub fn elf(name: &str) -> PathBuf {
    let profile = if SIZE_BUILDS.contains(&name) {
        "boot"
    } else if BOARD_AGENTS.contains(&name) {
        "agent"
    } else {
        "release"
    };
    dir()
        .join("target/thumbv7em-none-eabihf")
        .join(profile)
        .join(name)
}

/// The trust root the test bootloaders carry (a fixed test key; see testkit::keys).
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

/// Installs the toolchain if needed and builds one firmware package (release profile): what a
/// command that runs only that firmware needs.
pub fn build_one(package: &str) -> Result<()> {
    install::ensure("firmware toolchain", install::FIRMWARE)?;
    let mut cargo = firmware_cargo();
    cargo.args(["build", "--release", "--quiet", "-p", package]);
    step(
        &format!("{package} (thumbv7em, Debian rustc)"),
        &dir(),
        cargo,
    )
}

/// Installs the toolchain if needed and builds every firmware binary, with the test trust root
/// baked into the bootloaders.
pub fn build() -> Result<()> {
    install::ensure("firmware toolchain", install::FIRMWARE)?;
    let root_doc = test_root();
    std::fs::create_dir_all(root_doc.parent().context("root path")?)?;
    std::fs::write(&root_doc, testkit::keys::signed_trust_root())?;

    let mut cargo = firmware_cargo();
    cargo
        .env("FLEET_TRUST_ROOT", &root_doc)
        .args(["build", "--release", "--quiet", "--workspace"]);
    for boot in SIZE_BUILDS.iter().chain(BOARD_AGENTS) {
        cargo.args(["--exclude", boot]);
    }
    // Its two users are built alone below.
    cargo.args(["--exclude", "board-stm32l4r5"]);
    step("firmware build (thumbv7em, Debian rustc)", &dir(), cargo)?;
    for agent in BOARD_AGENTS {
        let mut one = firmware_cargo();
        one.env("FLEET_TRUST_ROOT", &root_doc).args([
            "build",
            "--profile",
            "agent",
            "--quiet",
            "-p",
            agent,
        ]);
        step(
            &format!("{agent} (agent firmware, agent profile)"),
            &dir(),
            one,
        )?;
    }
    // The emulated board's agent as a device would carry it, for its size figure only.
    let mut mps2 = firmware_cargo();
    mps2.env("FLEET_TRUST_ROOT", &root_doc).args([
        "build",
        "--profile",
        "agent",
        "--quiet",
        "-p",
        "agent-mps2",
    ]);
    step("agent-mps2 (agent profile, for its size)", &dir(), mps2)?;

    // One build each: the bootloaders' features (cortex-m-rt's `device`) must not reach the
    // agent, whose board support provides no interrupt table.
    // The agent without its validation path (so without the model runtime), kept aside.
    let mut core = firmware_cargo();
    core.env("FLEET_TRUST_ROOT", &root_doc).args([
        "build",
        "--profile",
        "boot",
        "--quiet",
        "-p",
        "agent-size",
        "--no-default-features",
    ]);
    step(
        "agent without the model runtime (size profile)",
        &dir(),
        core,
    )?;
    std::fs::copy(
        elf("agent-size"),
        elf("agent-size").with_file_name("agent-size-core"),
    )?;
    for b in SIZE_BUILDS {
        let mut boot = firmware_cargo();
        boot.env("FLEET_TRUST_ROOT", &root_doc).args([
            "build",
            "--profile",
            "boot",
            "--quiet",
            "-p",
            b,
        ]);
        step(&format!("{b} (size profile)"), &dir(), boot)?;
    }

    for app in TEST_APPS {
        raw_binary(app)?;
    }
    agent_variants(&root_doc)?;
    write_sizes()
}

/// The agent firmware as the hardware-in-the-loop suite signs it: the real one, the test
/// variants whose trial fails validation (`fault-slow`) or hangs (`fault-hang`), and one with a
/// function changed (`bench-change`, rolled out as a delta). Each is built
/// alone (features would otherwise unify), its binary kept under its own name; the real one last,
/// so the ELF left in place is the real firmware.
fn agent_variants(root_doc: &std::path::Path) -> Result<()> {
    build_agent(root_doc, "agent-mps2-slow", Some("fault-slow"), &[])?;
    build_agent(root_doc, "agent-mps2-hang", Some("fault-hang"), &[])?;
    // One function changed: the HIL suite's delta rollout (and bench-ota's case).
    build_agent(root_doc, "agent-mps2-change", Some("bench-change"), &[])?;
    build_agent(root_doc, "agent-mps2", None, &[]).map(drop)
}

/// Builds the agent firmware with `feature` and `env` and keeps its raw binary as NAME.bin
/// (the ELF is left in place: build the real one last).
pub fn build_agent(
    root_doc: &std::path::Path,
    name: &str,
    feature: Option<&str>,
    env: &[(&str, &str)],
) -> Result<PathBuf> {
    let mut cargo = firmware_cargo();
    cargo.env("FLEET_TRUST_ROOT", root_doc).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "agent-mps2",
    ]);
    if let Some(f) = feature {
        cargo.args(["--features", f]);
    }
    for (k, v) in env {
        cargo.env(k, v);
    }
    step(&format!("{name} (agent firmware)"), &dir(), cargo)?;
    let bin = raw_binary("agent-mps2")?;
    if name == "agent-mps2" {
        return Ok(bin);
    }
    let kept = bin.with_file_name(format!("{name}.bin"));
    std::fs::rename(&bin, &kept)?;
    Ok(kept)
}

/// `cargo` in the firmware workspace with the toolchain's environment cleared (see
/// `firmware_cargo`), for commands other than builds (`cargo update`).
pub fn cargo() -> Command {
    let mut c = firmware_cargo();
    c.current_dir(dir());
    c
}

/// Bytes of text + rodata + data of an ELF (Berkeley `size`: text, data).
fn text_bytes(elf: &std::path::Path) -> Result<u64> {
    let out = Command::new("arm-none-eabi-size")
        .arg(elf)
        .output()
        .context("arm-none-eabi-size")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// The size a bootloader must fit (issue 17: the full signed boot in 24 KiB).
const BOOTLOADER_TARGET: u64 = 24 * 1024;

/// target/bench/firmware-size.json: each bootloader's size (text + rodata + data), and its
/// code and read-only data by crate (by source line, so code inlined across crates counts for
/// the crate it was written in).
fn write_sizes() -> Result<()> {
    let mut boards = serde_json::Map::new();
    let mut by_crate = serde_json::Map::new();
    let mut largest = 0u64;
    for b in BOOTLOADERS {
        let bytes = text_bytes(&elf(b))?;
        println!("{b}: {bytes} bytes (text + rodata + data), target {BOOTLOADER_TARGET}");
        largest = largest.max(bytes);
        boards.insert((*b).to_owned(), bytes.into());
        let crates = code_by_source(&elf(b))?;
        let mut sorted: Vec<_> = crates.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = sorted
            .iter()
            .take(6)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  by crate: {}", top.join(", "));
        by_crate.insert((*b).to_owned(), serde_json::to_value(crates)?);
    }
    let agent = agent_size()?;
    let mut agents = serde_json::Map::new();
    for (board, package) in AGENTS {
        // Every board's figure from the agent profile (the emulated board's HIL build is
        // release, which `elf` names).
        let shipped = dir()
            .join("target/thumbv7em-none-eabihf/agent")
            .join(package);
        agents.insert((*board).to_owned(), board_agent_size(board, &shipped)?);
    }
    let doc = serde_json::json!({
        "bootloader_bytes": largest,
        "bootloaders": boards,
        "bootloader_code_by_crate": by_crate,
        "target_bytes": BOOTLOADER_TARGET,
        "agent": agent,
        "agents": agents,
    });
    let path = root().join("target/bench/firmware-size.json");
    std::fs::create_dir_all(path.parent().context("bench dir")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

/// A board's agent firmware as it ships: `code_bytes`, its text + rodata + data;
/// `code_by_crate`, those bytes by the crate whose source they come from (`code_by_source`:
/// model code inlined into the agent's functions counts as the model's);
/// `code_bytes_without_model_runtime`, the code less the `model` crate's; `static_ram_bytes`,
/// .data + .bss less the tensor arenas (`ARENAS`, given as `arena_bytes`) and, on mps2-an386,
/// `VIEW` (the RAM copy that stands in for memory-mapped flash there).
fn board_agent_size(board: &str, elf: &std::path::Path) -> Result<serde_json::Value> {
    let code = text_bytes(elf)?;
    let by_crate = code_by_source(elf)?;
    let model = by_crate.get("model").copied().unwrap_or(0);
    let (data, bss) = ram_sections(elf)?;
    let arena = symbol_bytes(elf, "ARENAS")?;
    let view = symbol_bytes(elf, "VIEW")?;
    let ram = (data + bss).saturating_sub(arena + view);
    let without_model = code - model.min(code);
    println!(
        "agent {board}: {code} bytes (text + rodata + data), {without_model} without the model runtime; static RAM {ram} bytes + arena {arena}"
    );
    Ok(serde_json::json!({
        "code_bytes": code,
        "code_bytes_without_model_runtime": without_model,
        "static_ram_bytes": ram,
        "arena_bytes": arena,
        "code_by_crate": by_crate,
    }))
}

/// Bytes of .data and of .bss of an ELF (Berkeley `size`: data, bss).
fn ram_sections(elf: &std::path::Path) -> Result<(u64, u64)> {
    let out = Command::new("arm-none-eabi-size")
        .arg(elf)
        .output()
        .context("arm-none-eabi-size")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let columns: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match columns.as_slice() {
        [_, data, bss, ..] => Ok((*data, *bss)),
        _ => anyhow::bail!("arm-none-eabi-size {}: {text}", elf.display()),
    }
}

/// Bytes of the static variables named `name` (in any module) of an ELF; 0 when it has none.
fn symbol_bytes(elf: &std::path::Path, name: &str) -> Result<u64> {
    let nm = Command::new("arm-none-eabi-nm")
        .args(["--print-size", "-C"])
        .arg(elf)
        .output()
        .context("arm-none-eabi-nm")?;
    Ok(String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (_, size, kind, symbol) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let static_var = matches!(kind, "b" | "B" | "d" | "D");
            let named = symbol.rsplit("::").next() == Some(name);
            (static_var && named).then(|| u64::from_str_radix(size, 16).ok())?
        })
        .sum())
}

/// Code bytes per crate of a firmware ELF (from the symbol table).
pub fn code_by_crate(elf: &std::path::Path) -> Result<std::collections::BTreeMap<String, u64>> {
    let nm = Command::new("arm-none-eabi-nm")
        .args(["--print-size", "-C"])
        .arg(elf)
        .output()
        .context("arm-none-eabi-nm")?;
    let mut by_crate = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&nm.stdout).lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "r" | "R") {
            continue;
        }
        let name = name.trim_start_matches(['<', '&']);
        let krate = name
            .split("::")
            .next()
            .unwrap_or(name)
            .split(' ')
            .next()
            .unwrap_or(name)
            .to_owned();
        *by_crate.entry(krate).or_insert(0) += u64::from_str_radix(size, 16).unwrap_or(0);
    }
    Ok(by_crate)
}

/// Bytes of a bootloader ELF by the crate each byte comes from: code by its line-table entry
/// (an inlined function's code counts for the crate that wrote it, not the function it was
/// inlined into), read-only data and code without line information (assembly) by symbol name
/// as `code_by_crate` does, and the rest of the loaded sections as "unnamed". Sums to the
/// image's text + rodata + data.
pub fn code_by_source(elf: &std::path::Path) -> Result<std::collections::BTreeMap<String, u64>> {
    let nm = Command::new("arm-none-eabi-nm")
        .args(["--print-size", "-C"])
        .arg(elf)
        .output()
        .context("arm-none-eabi-nm")?;
    // Code symbols' ranges, walked in 2-byte units (Thumb).
    let mut code = Vec::new();
    let mut by_crate = std::collections::BTreeMap::new();
    let mut named = 0u64;
    for line in String::from_utf8_lossy(&nm.stdout).lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(addr), Some(size), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(addr), Ok(size)) = (u64::from_str_radix(addr, 16), u64::from_str_radix(size, 16))
        else {
            continue;
        };
        match kind {
            "t" | "T" => code.push((addr, size, symbol_crate(name))),
            "r" | "R" | "d" | "D" => {
                *by_crate.entry(symbol_crate(name)).or_insert(0) += size;
            }
            _ => continue,
        }
        named += size;
    }
    let mut input = String::new();
    for &(addr, size, _) in &code {
        for a in (addr..addr + size).step_by(2) {
            input.push_str(&format!("{a:#x}\n"));
        }
    }
    // -i: the whole inline chain of each address; -a: each chain opens with its address.
    let mut child = Command::new("arm-none-eabi-addr2line")
        .args(["-i", "-a", "-e"])
        .arg(elf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("arm-none-eabi-addr2line")?;
    let mut stdin = child.stdin.take().context("addr2line stdin")?;
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(input.as_bytes())
    });
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("addr2line writer"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    // Per address, the innermost frame outside the standard library: a slice access or an
    // integer method inlined into salty is salty's code; from_utf8 itself stays core's.
    let mut chains: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("0x") {
            chains.push(Vec::new());
        } else if let (Some(chain), Some(krate)) = (chains.last_mut(), source_crate(line)) {
            chain.push(krate);
        }
    }
    let mut chains = chains.into_iter();
    for (addr, size, symbol_crate) in &code {
        for a in (*addr..addr + size).step_by(2) {
            let unit = (addr + size - a).min(2);
            let chain = chains.next().unwrap_or_default();
            let krate = chain
                .iter()
                .find(|k| !matches!(k.as_str(), "core" | "compiler_builtins" | "alloc"))
                .or(chain.first())
                .cloned()
                .unwrap_or_else(|| symbol_crate.clone());
            *by_crate.entry(krate).or_insert(0) += unit;
        }
    }
    let total = text_bytes(elf)?;
    if total > named {
        by_crate.insert("unnamed".to_owned(), total - named);
    }
    Ok(by_crate)
}

/// The crate a demangled symbol belongs to (its first path segment); machine-outlined code
/// counts as one entry.
fn symbol_crate(name: &str) -> String {
    if name.starts_with("OUTLINED_FUNCTION_") {
        return "outlined".to_owned();
    }
    // salty's field arithmetic: assembly, so no line table says whose it is.
    if name.starts_with("fe25519_") {
        return "salty".to_owned();
    }
    let name = name.trim_start_matches(['<', '&']);
    name.split("::")
        .next()
        .unwrap_or(name)
        .split(' ')
        .next()
        .unwrap_or(name)
        .to_owned()
}

/// The crate of a source path from the line table: a registry crate by its folder (version
/// dropped), the standard library by its library folder, this repository's crates by theirs.
fn source_crate(location: &str) -> Option<String> {
    let path = location.rsplit_once(':').map_or(location, |(p, _)| p);
    if path.starts_with("??") {
        return None;
    }
    if let Some((_, rest)) = path.split_once("/library/") {
        return rest.split('/').next().map(|c| c.replace('-', "_"));
    }
    if let Some((_, rest)) = path.split_once("/registry/src/") {
        let dir = rest.split('/').nth(1)?;
        let name = dir.rsplit_once('-').map_or(dir, |(n, _)| n);
        return Some(name.replace('-', "_"));
    }
    let root = root();
    let relative = std::path::Path::new(path).strip_prefix(&root).ok()?;
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next()?;
    let krate = if first == "firmware" {
        parts.next()?
    } else {
        first
    };
    Some(krate.replace('-', "_"))
}

/// The agent core linked for mps2-an386: code without the model runtime, and its state in RAM
/// (printed by the firmware itself when QEMU runs it).
fn agent_size() -> Result<serde_json::Value> {
    let elf = elf("agent-size");
    let by_crate = code_by_crate(&elf)?;
    let total = text_bytes(&elf)?;
    // The model runtime inlines into the agent at opt-level z: measure the agent built without
    // its validation path instead of counting symbols.
    let core = text_bytes(&elf.with_file_name("agent-size-core"))?;
    let runtime = total.saturating_sub(core);
    let dir = tempfile_dir()?;
    let flash = vec![0xFFu8; layout::MPS2_AN386.flash_size as usize];
    std::fs::write(dir.join("flash.bin"), flash)?;
    let options = Options {
        timeout: Some(Duration::from_secs(60)),
        ..Options::default()
    };
    let out = qemu::mps2_an386(&elf, options)
        .current_dir(&dir)
        .output()
        .context("qemu-system-arm")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let state: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("agent state: ")?
                .strip_suffix(" bytes")?
                .parse()
                .ok()
        })
        .with_context(|| format!("agent-size printed no state size: {text}"))?;
    println!(
        "agent firmware: {total} bytes (text + rodata + data), {core} without the model runtime; agent state {state} bytes of RAM"
    );
    Ok(serde_json::json!({
        "code_bytes": total,
        "model_runtime_bytes": runtime,
        "code_bytes_without_model_runtime": core,
        "state_ram_bytes": state,
        "code_by_crate": by_crate,
    }))
}

/// A fresh working directory under target/ for an emulator run.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = root().join("target/agent-size-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run(_args: &[String]) -> Result<()> {
    build()
}
