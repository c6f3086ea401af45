//! `cargo xtask bench-ota`: bytes over the air with firmware deltas and compressed models, on
//! real builds of the agent firmware and the model fixtures; our stream format beside bsdiff +
//! heatshrink on the same inputs; the decoder's code and RAM on the device. Writes
//! target/bench/ota-bytes.json.

use crate::firmware;
use crate::run::{root, step};
use anyhow::{Context, Result, bail, ensure};
use model::graph::Model;
use model::ops::OpKind;
use std::path::Path;

/// The dependency the `firmware-dependency-upgrade` case upgrades, and from which version (the
/// firmware's lock file holds the version it is upgraded to).
const UPGRADED: (&str, &str) = ("sequential-storage", "8.0.0");

struct Case {
    name: &'static str,
    base: Vec<u8>,
    target: Vec<u8>,
}

pub fn run(args: &[String]) -> Result<()> {
    let build = !args.iter().any(|a| a == "--no-build");
    if build {
        firmware::build()?;
    }
    measure(build)
}

/// The measurement after `cargo xtask firmware` (CI): builds the firmware variants unless
/// `build` is false (then the ones built before are read).
pub fn measure(build: bool) -> Result<()> {
    let fw = firmware_builds(build)?;
    let fixtures = root().join("model/fixtures");
    let read = |name: &str| {
        std::fs::read(fixtures.join(name)).with_context(|| format!("model fixture {name}"))
    };
    let good = read("good.tflite")?;
    let regressed = read("regressed.tflite")?;
    let cases = [
        Case {
            name: "firmware-one-function",
            base: fw.current.clone(),
            target: fw.one_function,
        },
        Case {
            name: "firmware-version-bump",
            base: fw.current.clone(),
            target: fw.version_bump,
        },
        Case {
            name: "firmware-dependency-upgrade",
            base: fw.old_dependency,
            target: fw.current,
        },
        Case {
            name: "model-retrained",
            base: good.clone(),
            target: regressed.clone(),
        },
        Case {
            name: "model-head-only",
            target: head_only(&good, &regressed)?,
            base: good.clone(),
        },
        // Compression alone: the model and its validation set with no base.
        Case {
            name: "model-compressed",
            base: Vec::new(),
            target: good,
        },
        Case {
            name: "validation-set-compressed",
            base: Vec::new(),
            target: read("good.vset")?,
        },
        Case {
            name: "model-slow-compressed",
            base: Vec::new(),
            target: read("slow.tflite")?,
        },
    ];
    let mut rows = Vec::new();
    println!(
        "{:<28} {:>8} {:>9} {:>7} {:>12} {:>7}",
        "case", "full", "ours", "%", "bsdiff+hs", "%"
    );
    for case in &cases {
        let ours = if case.base.is_empty() {
            delta::encode::compress(&case.target)?
        } else {
            delta::encode::delta(&case.base, &case.target)?
        };
        let back = delta::decode::apply(&case.base, &ours)
            .map_err(|e| anyhow::anyhow!("{}: our stream does not decode: {e}", case.name))?;
        ensure!(
            back == case.target,
            "{}: our stream decodes to other bytes",
            case.name
        );
        let other = bsdiff_heatshrink(&case.base, &case.target)?;
        let full = case.target.len();
        let pct = |n: usize| 100.0 * n as f64 / full.max(1) as f64;
        println!(
            "{:<28} {:>8} {:>9} {:>6.2}% {:>12} {:>6.2}%",
            case.name,
            full,
            ours.len(),
            pct(ours.len()),
            other,
            pct(other)
        );
        rows.push(serde_json::json!({
            "name": case.name,
            "full_bytes": full,
            "sent_bytes": ours.len(),
            "percent": round2(pct(ours.len())),
            "base_bytes": case.base.len(),
            "candidates": {
                "fdl1": {"sent_bytes": ours.len(), "percent": round2(pct(ours.len()))},
                "bsdiff_heatshrink": {"sent_bytes": other, "percent": round2(pct(other))},
            },
        }));
    }
    let (code, ram) = decoder_on_device()?;
    println!("delta decoder on the device: {code} bytes of code, {ram} bytes of RAM");
    let doc = serde_json::json!({
        "cases": rows,
        "device_ram_bytes": ram,
        "device_code_bytes": code,
        "device_basis": "firmware/delta-size on thumbv7em (release): `delta` code by crate, size of the static Decoder",
        "block_bytes": delta::BLOCK_SIZE,
        "candidates": {
            "fdl1": "bsdiff's matches, then per 4 KiB block LZ77 and an adaptive binary range coder (delta crate)",
            "bsdiff_heatshrink": format!("bsdiff 4 patch compressed by heatshrink W={HS_WINDOW} L={HS_LOOKAHEAD} (RAM: its {} B window and state)", 1 << HS_WINDOW),
        },
        "upgraded_dependency": format!("{} {} to the firmware lock's", UPGRADED.0, UPGRADED.1),
    });
    let path = root().join("target/bench/ota-bytes.json");
    std::fs::create_dir_all(path.parent().context("bench dir")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("wrote {}", path.display());
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

struct FirmwareBuilds {
    current: Vec<u8>,
    one_function: Vec<u8>,
    version_bump: Vec<u8>,
    old_dependency: Vec<u8>,
}

/// The agent firmware as it is, with one function changed (feature `bench-change`), with only
/// its build version bumped, and built against the older version of a dependency. The real
/// firmware is built last so that what `hil` signs stays in place.
fn firmware_builds(build: bool) -> Result<FirmwareBuilds> {
    let rootdoc = firmware::test_root();
    let bin = |name: &str| firmware::elf("agent-mps2").with_file_name(format!("{name}.bin"));
    if build {
        firmware::build_agent(&rootdoc, "agent-mps2-change", Some("bench-change"), &[])?;
        firmware::build_agent(
            &rootdoc,
            "agent-mps2-bump",
            None,
            &[("FLEET_FIRMWARE_BUILD", "0.1.1")],
        )?;
        with_dependency_downgraded(|| {
            firmware::build_agent(&rootdoc, "agent-mps2-olddep", None, &[]).map(drop)
        })?;
        firmware::build_agent(&rootdoc, "agent-mps2", None, &[])?;
    }
    let read = |name: &str| {
        let p = bin(name);
        std::fs::read(&p)
            .with_context(|| format!("{}: build it with `cargo xtask bench-ota`", p.display()))
    };
    Ok(FirmwareBuilds {
        current: read("agent-mps2")?,
        one_function: read("agent-mps2-change")?,
        version_bump: read("agent-mps2-bump")?,
        old_dependency: read("agent-mps2-olddep")?,
    })
}

/// Runs `f` with the firmware lock file pinning `UPGRADED` at its older version, and puts the
/// lock file back afterwards (also when `f` fails, and at the next run if this one was killed).
fn with_dependency_downgraded(f: impl FnOnce() -> Result<()>) -> Result<()> {
    let lock = firmware::dir().join("Cargo.lock");
    let saved = root().join("target/bench-ota/Cargo.lock.orig");
    if saved.exists() {
        std::fs::copy(&saved, &lock)?;
    }
    std::fs::create_dir_all(saved.parent().context("dir")?)?;
    std::fs::copy(&lock, &saved)?;
    let mut update = firmware::cargo();
    update.args([
        "update",
        "--quiet",
        "-p",
        UPGRADED.0,
        "--precise",
        UPGRADED.1,
    ]);
    let result = step(
        &format!("{} {} (older dependency)", UPGRADED.0, UPGRADED.1),
        &firmware::dir(),
        update,
    )
    .and_then(|()| f());
    std::fs::copy(&saved, &lock)?;
    std::fs::remove_file(&saved)?;
    result
}

/// `base` with its last FULLY_CONNECTED layer's weights, bias and weight scales taken from
/// `other` (the same network trained again): a model whose classifier head alone changed.
fn head_only(base: &[u8], other: &[u8]) -> Result<Vec<u8>> {
    let ranges = |bytes: &[u8]| -> Result<Vec<(usize, usize)>> {
        let m = Model::parse(bytes).map_err(|e| anyhow::anyhow!("model: {e:?}"))?;
        let op = m
            .ops
            .iter()
            .rev()
            .find(|op| matches!(op.kind, OpKind::FullyConnected { .. }))
            .context("no FULLY_CONNECTED")?;
        let mut out = Vec::new();
        for t in [op.weights, op.bias].into_iter().flatten() {
            let t = &m.tensors[t];
            for part in [t.data.unwrap_or_default(), t.channel_scales] {
                if !part.is_empty() {
                    out.push((part.as_ptr() as usize - bytes.as_ptr() as usize, part.len()));
                }
            }
        }
        Ok(out)
    };
    let (mine, theirs) = (ranges(base)?, ranges(other)?);
    ensure!(mine == theirs, "the two models are laid out differently");
    let mut out = base.to_vec();
    for (at, len) in mine {
        out[at..at + len].copy_from_slice(&other[at..at + len]);
    }
    Model::parse(&out).map_err(|e| anyhow::anyhow!("head-only model: {e:?}"))?;
    ensure!(out != base, "the head did not change");
    Ok(out)
}

const HS_WINDOW: usize = 12;
const HS_LOOKAHEAD: usize = 5;

/// The other candidate: bsdiff's own patch (or the target, without a base) through heatshrink.
fn bsdiff_heatshrink(base: &[u8], target: &[u8]) -> Result<usize> {
    use heatshrink::encoder::HeatshrinkEncoder;
    use heatshrink::{Poll, SinkError};
    let input = if base.is_empty() {
        target.to_vec()
    } else {
        let mut patch = Vec::new();
        bsdiff::diff(base, target, &mut patch)?;
        patch
    };
    let mut enc = Box::new(HeatshrinkEncoder::<
        HS_WINDOW,
        HS_LOOKAHEAD,
        { 2 << HS_WINDOW },
    >::new());
    let (mut taken, mut out, mut buf) = (0, 0usize, [0u8; 4096]);
    loop {
        if taken < input.len() {
            match enc.sink(&input[taken..]) {
                Ok(n) => taken += n,
                Err(SinkError::Full) => {}
                Err(SinkError::Misuse) => bail!("heatshrink: misuse"),
            }
        }
        if taken == input.len() {
            enc.finish();
        }
        match enc.poll(&mut buf) {
            Ok(Poll::More(n)) => out += n,
            Ok(Poll::Empty(n)) => {
                out += n;
                if taken == input.len() && matches!(enc.finish(), heatshrink::Finish::Done) {
                    return Ok(out);
                }
            }
            Err(_) => bail!("heatshrink: poll"),
        }
    }
}

/// The decoder's code (the `delta` crate in firmware/delta-size) and RAM (its static Decoder).
fn decoder_on_device() -> Result<(u64, u64)> {
    let elf = firmware::elf("delta-size");
    ensure!(
        elf.exists(),
        "{}: build it with `cargo xtask firmware`",
        elf.display()
    );
    let code = firmware::code_by_crate(&elf)?
        .get("delta")
        .copied()
        .unwrap_or(0);
    let ram = symbol_size(&elf, "DECODER")?;
    ensure!(code > 0, "no delta code in {}", elf.display());
    Ok((code, ram))
}

fn symbol_size(elf: &Path, name: &str) -> Result<u64> {
    let nm = std::process::Command::new("arm-none-eabi-nm")
        .args(["--print-size"])
        .arg(elf)
        .output()
        .context("arm-none-eabi-nm")?;
    String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|l| {
            let mut p = l.split_whitespace();
            let (_, size, _, sym) = (p.next()?, p.next()?, p.next()?, p.next()?);
            (sym == name)
                .then(|| u64::from_str_radix(size, 16).ok())
                .flatten()
        })
        .with_context(|| format!("no symbol {name} in {}", elf.display()))
}
