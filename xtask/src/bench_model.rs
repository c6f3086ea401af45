//! `cargo xtask bench-model`: runs the model fixtures on an emulated Cortex-M4 (QEMU
//! mps2-an386, 62.5 MIPS virtual clock) and writes target/bench/model.json.
//!
//! The firmware judges each model against the default policy (accuracy >= 90 %, p99 <= 10 ms)
//! as a device would; this command fails if the verdicts are not the expected ones: `good`
//! passes, `regressed` fails on accuracy only, `slow` fails on latency only.

use crate::firmware;
use crate::run::root;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use testkit::qemu::{self, Options};

/// SysTick counts the 25 MHz system clock; an instruction takes 16 ns under -icount shift=4.
const INSTRUCTIONS_PER_TICK: f64 = 40.0 / 16.0;

fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn num(f: &BTreeMap<&str, &str>, key: &str) -> Result<f64> {
    f.get(key)
        .with_context(|| format!("missing {key}"))?
        .parse()
        .with_context(|| format!("bad {key}"))
}

fn int(f: &BTreeMap<&str, &str>, key: &str) -> Result<u64> {
    f.get(key)
        .with_context(|| format!("missing {key}"))?
        .parse()
        .with_context(|| format!("bad {key}"))
}

/// Bytes of code the model runtime (`model::...` functions) takes in the firmware.
fn runtime_code_bytes(elf: &std::path::Path) -> Result<u64> {
    Ok(crate::firmware::code_by_crate(elf)?
        .get("model")
        .copied()
        .unwrap_or(0))
}

pub fn run(_args: &[String]) -> Result<()> {
    firmware::build()?;
    let elf = firmware::elf("model-bench");
    let options = Options {
        timeout: Some(Duration::from_secs(300)),
        ..Options::default()
    };
    let out = qemu::mps2_an386(&elf, options)
        .output()
        .context("running qemu-system-arm")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.lines().any(|l| l == "done") {
        bail!(
            "model-bench firmware failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut models: Vec<Value> = Vec::new();
    for line in text.lines() {
        let f = fields(line);
        if line.starts_with("model=") {
            let samples = num(&f, "samples")?;
            let correct = int(&f, "correct")?;
            models.push(json!({
                "name": f["model"],
                "bytes": int(&f, "bytes")?,
                "arena_bytes": int(&f, "arena")?,
                "macs": int(&f, "macs")?,
                "samples": samples as u64,
                "correct": correct,
                "accuracy": correct as f64 / samples,
                "p50_us": int(&f, "p50_us")?,
                "p99_us": int(&f, "p99_us")?,
                "max_us": int(&f, "max_us")?,
                "accuracy_ok": f.get("accuracy_ok") == Some(&"1"),
                "latency_ok": f.get("latency_ok") == Some(&"1"),
                "verdict": f["verdict"],
                "ops": [],
            }));
        } else if line.starts_with("op ") {
            let m = models.last_mut().context("op line before its model")?;
            let instructions = num(&f, "ticks")? * INSTRUCTIONS_PER_TICK / num(&f, "runs")?;
            let macs = int(&f, "macs")? as f64;
            m["ops"].as_array_mut().context("ops")?.push(json!({
                "index": int(&f, "index")?,
                "kind": f["kind"],
                "macs": macs as u64,
                "instructions": instructions.round() as u64,
                "instructions_per_mac": if macs > 0.0 { Value::from((instructions / macs * 10.0).round() / 10.0) } else { Value::Null },
            }));
        }
    }
    let size = Command::new("arm-none-eabi-size")
        .arg(&elf)
        .output()
        .context("arm-none-eabi-size")?;
    let size_line = String::from_utf8_lossy(&size.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let text_bytes: u64 = size_line
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let runtime_bytes = runtime_code_bytes(&elf)?;
    let report = json!({
        "board": "qemu mps2-an386 (Cortex-M4F), -icount shift=4: 62.5 MIPS",
        "policy": {"min_accuracy": 0.9, "max_p99_latency_us": 10_000},
        "firmware_text_bytes": text_bytes,
        "runtime_code_bytes": runtime_bytes,
        "models": models,
    });
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;

    println!(
        "{:<10} {:>7} {:>6} {:>8} {:>9} {:>9} {:>8}  verdict",
        "model", "bytes", "arena", "MACs", "accuracy", "p99 (ms)", "max (ms)"
    );
    for m in &models {
        println!(
            "{:<10} {:>7} {:>6} {:>8} {:>8.1}% {:>9.2} {:>8.2}  {}",
            m["name"].as_str().unwrap_or(""),
            m["bytes"],
            m["arena_bytes"],
            m["macs"],
            m["accuracy"].as_f64().unwrap_or(0.0) * 100.0,
            m["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
            m["max_us"].as_f64().unwrap_or(0.0) / 1000.0,
            m["verdict"].as_str().unwrap_or("")
        );
        for op in m["ops"].as_array().into_iter().flatten() {
            if let Some(per_mac) = op["instructions_per_mac"].as_f64() {
                println!(
                    "    {:<18} {:>7} MACs {:>9} instructions {:>6.1} per MAC",
                    op["kind"].as_str().unwrap_or(""),
                    op["macs"],
                    op["instructions"],
                    per_mac
                );
            }
        }
    }
    println!(
        "model runtime code: {runtime_bytes} bytes; firmware .text (with fixtures): {text_bytes} bytes"
    );
    println!("wrote target/bench/model.json");

    let verdict = |name: &str| {
        models
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| (m["accuracy_ok"] == true, m["latency_ok"] == true))
    };
    let expected = [
        ("good", (true, true)),
        ("regressed", (false, true)),
        ("slow", (true, false)),
    ];
    for (name, want) in expected {
        if verdict(name) != Some(want) {
            bail!(
                "{name}: (accuracy ok, latency ok) = {:?}, expected {want:?}",
                verdict(name)
            );
        }
    }
    Ok(())
}
