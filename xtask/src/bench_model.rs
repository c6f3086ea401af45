//! `cargo xtask bench-model [--model PATH.tflite [--validation-set PATH.vset] [--out FILE.json]]`:
//! int8 models on an emulated Cortex-M4 (QEMU mps2-an386, `-icount shift=4`: 62.5 MIPS of
//! deterministic virtual time).
//!
//! Without `--model` it runs the accuracy fixtures (`good`, `regressed`, `slow`, `per_tensor`
//! over their validation sets, outputs checked against `model/fixtures/NAME.ref`) and the
//! benchmark models (`kws`, `resnet8`, `vww`, `autoencoder`: `model/fixtures/bench/NAME.tflite`
//! over the cases of `NAME.io`), writes target/bench/model.json, and fails if any output byte
//! differs from the reference, or if the verdicts under the default policy (accuracy >= 90 %,
//! p99 <= 10 ms) are not the expected ones: `good` and `per_tensor` pass, `regressed` fails on
//! accuracy only, `slow` on latency only.
//!
//! With `--model` it runs that one file the same way: over the validation set when one is
//! given (accuracy and verdict too), else over 20 random inputs (seed 1; uniform in [-1, 1)
//! for a float32 input); the same structure with one entry in `models[]` goes to `--out`
//! (default target/bench/model-STEM.json). A model the runtime cannot load is refused before
//! QEMU starts, with `model::Model::parse`'s reason.
//!
//! The firmware (firmware/model-bench) is built once and holds no model: the models and their
//! cases are packed into one job file that QEMU copies into the board's PSRAM at 0x2100_0000
//! (`-device loader,...,force-raw=on`); the job's layout is in the firmware's doc.
//!
//! Figures per model: `instructions` per inference (the mean over the cases; SysTick ticks x
//! 2.5), `instructions_per_mac`, `p50_us`/`p99_us`/`max_us` of the inferences at 62.5 MIPS,
//! `arena_bytes` from the model's plan; per operator over the first 20 cases in `ops[]`.

use crate::firmware;
use crate::run::root;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::qemu::{self, Options};

/// SysTick counts the 25 MHz system clock; an instruction takes 16 ns under -icount shift=4.
const INSTRUCTIONS_PER_TICK: f64 = 40.0 / 16.0;
const NS_PER_TICK: u64 = 40;
/// Where the firmware finds the job (mps2-an386 PSRAM, 16 MiB).
const JOB_ADDR: u32 = 0x2100_0000;
const JOB_MAX: usize = 16 * 1024 * 1024;
/// The bench firmware's arena.
const BENCH_ARENA: usize = 2 * 1024 * 1024;
/// The default policy, as the firmware judges it.
const MAX_P99_US: u64 = 10_000;
/// Random cases for a model given without a validation set.
const RANDOM_CASES: usize = 20;
const RANDOM_SEED: u64 = 1;

/// The accuracy fixtures and their expected (accuracy ok, latency ok).
const FIXTURES: &[(&str, (bool, bool))] = &[
    ("good", (true, true)),
    ("regressed", (false, true)),
    ("slow", (true, false)),
    ("per_tensor", (true, true)),
];
/// The benchmark models of the four MLPerf Tiny shapes.
const BENCH_MODELS: &[&str] = &["kws", "resnet8", "vww", "autoencoder"];

/// One model to run and what it is checked against.
struct Entry {
    name: String,
    file: PathBuf,
    model: Vec<u8>,
    /// A validation set: accuracy and verdict.
    vset: Option<Vec<u8>>,
    /// Output rows TFLite's reference kernels gave for the validation set's inputs.
    rows: Option<Vec<u8>>,
    /// The file the reference outputs come from (.ref or .io): every output is checked.
    reference: Option<PathBuf>,
    /// Cases: u32 count, then input bytes (and output bytes when `io_outputs`).
    io: Option<Vec<u8>>,
    io_outputs: bool,
    /// Where the inputs come from, for the report.
    inputs: String,
}

fn rel(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| rel(path))
}

/// Byte lengths of the input and output tensors, as the interpreter holds them; refuses a
/// model the runtime cannot load, with the runtime's reason.
fn check_model(path: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    let m = model::Model::parse_explained(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: the model runtime cannot load this model: {e}",
            rel(path)
        )
    })?;
    if m.arena_size > BENCH_ARENA {
        bail!(
            "{}: needs {} bytes of arena, the bench firmware has {BENCH_ARENA}",
            rel(path),
            m.arena_size
        );
    }
    let bytes_of = |t: usize| m.tensors.get(t).map_or(0, |t| t.len * t.ty.size());
    Ok((bytes_of(m.input), bytes_of(m.output)))
}

/// An accuracy fixture: its validation set and its reference output rows.
fn fixture(name: &str) -> Result<Entry> {
    let dir = root().join("model/fixtures");
    let file = dir.join(format!("{name}.tflite"));
    let model = read(&file)?;
    check_model(&file, &model)?;
    let set = dir.join(format!("{name}.vset"));
    let reference = dir.join(format!("{name}.ref"));
    Ok(Entry {
        name: name.to_owned(),
        model,
        vset: Some(read(&set)?),
        rows: Some(read(&reference)?),
        io: None,
        io_outputs: false,
        inputs: format!("validation set {}", rel(&set)),
        reference: Some(reference),
        file,
    })
}

/// A benchmark model: its reference cases (.io).
fn bench_model(name: &str) -> Result<Entry> {
    let dir = root().join("model/fixtures/bench");
    let file = dir.join(format!("{name}.tflite"));
    let io_path = dir.join(format!("{name}.io"));
    let model = read(&file).with_context(|| format!("benchmark model {name}"))?;
    let io = read(&io_path).with_context(|| format!("benchmark model {name}: reference cases"))?;
    let (input, output) = check_model(&file, &model)?;
    let count = io
        .get(..4)
        .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize);
    if count == 0 || io.len() != 4 + count * (input + output) {
        bail!(
            "{}: {} bytes is not a u32 count and cases of {input} input and {output} output bytes",
            rel(&io_path),
            io.len()
        );
    }
    Ok(Entry {
        name: name.to_owned(),
        model,
        vset: None,
        rows: None,
        io: Some(io),
        io_outputs: true,
        inputs: format!("reference cases {}", rel(&io_path)),
        reference: Some(io_path),
        file,
    })
}

/// splitmix64: seeded inputs that are the same on every run.
fn random_inputs(count: usize, len: usize, float: bool, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut io = (count as u32).to_le_bytes().to_vec();
    for _ in 0..count {
        if float {
            for _ in 0..len / 4 {
                let v = (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                io.extend(v.to_le_bytes());
            }
        } else {
            io.extend((0..len).map(|_| next() as u8));
        }
    }
    io
}

fn type_name(ty: Option<model::graph::ElemType>) -> &'static str {
    match ty {
        Some(model::graph::ElemType::Float32) => "float32",
        _ => "int8",
    }
}

/// A user's model: over its validation set, or over random inputs.
fn user_model(path: &Path, set: Option<&Path>) -> Result<Entry> {
    let model = read(path)?;
    let (input, _) = check_model(path, &model)?;
    let name = path
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let (vset, io, inputs) = match set {
        Some(set) => {
            let bytes = read(set)?;
            let parsed = model::ValidationSet::parse(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: not a validation set: {e}", rel(set)))?;
            let m = model::Model::parse(&model).map_err(|e| anyhow::anyhow!("{e}"))?;
            let input_type = m.tensors.get(m.input).map(|t| t.ty);
            if parsed.input_len != m.input_len()
                || parsed.classes != m.output_len()
                || Some(parsed.input_type) != input_type
            {
                bail!(
                    "{}: {} inputs of {} values and {} classes; the model takes {} inputs of {} values and gives {} outputs",
                    rel(set),
                    type_name(Some(parsed.input_type)),
                    parsed.input_len,
                    parsed.classes,
                    type_name(input_type),
                    m.input_len(),
                    m.output_len()
                );
            }
            (Some(bytes), None, format!("validation set {}", rel(set)))
        }
        None => {
            let float = model::Model::parse(&model)
                .ok()
                .and_then(|m| {
                    m.tensors
                        .get(m.input)
                        .map(|t| t.ty == model::graph::ElemType::Float32)
                })
                .unwrap_or(false);
            (
                None,
                Some(random_inputs(RANDOM_CASES, input, float, RANDOM_SEED)),
                format!("{RANDOM_CASES} random inputs, seed {RANDOM_SEED}"),
            )
        }
    };
    Ok(Entry {
        name,
        file: path.to_owned(),
        model,
        vset,
        rows: None,
        reference: None,
        io,
        io_outputs: false,
        inputs,
    })
}

/// The job the firmware reads from PSRAM (layout in firmware/model-bench/src/main.rs).
fn job(entries: &[Entry]) -> Result<Vec<u8>> {
    const HEADER: usize = 16;
    const ENTRY: usize = 40;
    let mut body: Vec<u8> = Vec::new();
    let mut table: Vec<u8> = Vec::new();
    let base = HEADER + ENTRY * entries.len();
    let mut put = |bytes: Option<&[u8]>, table: &mut Vec<u8>| {
        let bytes = bytes.unwrap_or_default();
        // Flatbuffers are read in place: keep every part 16-byte aligned.
        while body.len() % 16 != 0 {
            body.push(0);
        }
        let off = if bytes.is_empty() {
            0
        } else {
            base + body.len()
        };
        body.extend_from_slice(bytes);
        table.extend((off as u32).to_le_bytes());
        table.extend((bytes.len() as u32).to_le_bytes());
    };
    for e in entries {
        put(Some(&e.model), &mut table);
        put(e.vset.as_deref(), &mut table);
        put(e.rows.as_deref(), &mut table);
        put(e.io.as_deref(), &mut table);
        table.extend(u32::from(e.io_outputs).to_le_bytes());
        table.extend(0u32.to_le_bytes());
    }
    let total = base + body.len();
    if total > JOB_MAX {
        bail!("the models and their cases take {total} bytes; the board's PSRAM holds {JOB_MAX}");
    }
    let mut job = b"MBJ1".to_vec();
    job.extend((total as u32).to_le_bytes());
    job.extend((entries.len() as u32).to_le_bytes());
    job.extend(0u32.to_le_bytes());
    job.extend(table);
    job.extend(body);
    Ok(job)
}

fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn int(f: &BTreeMap<&str, &str>, key: &str) -> Result<u64> {
    f.get(key)
        .with_context(|| format!("missing {key}"))?
        .parse()
        .with_context(|| format!("bad {key}"))
}

/// Bytes of code the model runtime (`model::...` functions) takes in the firmware.
fn runtime_code_bytes(elf: &Path) -> Result<u64> {
    Ok(crate::firmware::code_by_crate(elf)?
        .get("model")
        .copied()
        .unwrap_or(0))
}

/// What the command line asks for.
#[derive(Debug, Default)]
struct Args {
    model: Option<PathBuf>,
    validation_set: Option<PathBuf>,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench-model [--model PATH.tflite [--validation-set PATH.vset] [--out FILE.json]]";

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--model" => &mut parsed.model,
            "--validation-set" => &mut parsed.validation_set,
            "--out" => &mut parsed.out,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        };
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        // Relative to where the user ran cargo, not the workspace root.
        *slot = Some(std::path::absolute(value)?);
    }
    if parsed.model.is_none() && (parsed.validation_set.is_some() || parsed.out.is_some()) {
        bail!("--validation-set and --out go with --model\n{USAGE}");
    }
    Ok(parsed)
}

pub fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let (entries, out) = match &args.model {
        Some(path) => {
            let entry = user_model(path, args.validation_set.as_deref())?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| root().join(format!("target/bench/model-{}.json", entry.name)));
            (vec![entry], out)
        }
        None => {
            let mut entries = FIXTURES
                .iter()
                .map(|(name, _)| fixture(name))
                .collect::<Result<Vec<_>>>()?;
            for name in BENCH_MODELS {
                entries.push(bench_model(name)?);
            }
            (entries, root().join("target/bench/model.json"))
        }
    };
    let job_bytes = job(&entries)?;

    firmware::build_one("model-bench")?;
    let elf = firmware::elf("model-bench");
    let job_path = root().join(format!(
        "target/bench/jobs/{}.job",
        out.file_stem().unwrap_or_default().to_string_lossy()
    ));
    std::fs::create_dir_all(job_path.parent().context("job dir")?)?;
    std::fs::write(&job_path, &job_bytes)?;
    let options = Options {
        timeout: Some(Duration::from_secs(1800)),
        ..Options::default()
    };
    // QEMU's option syntax doubles a comma inside a value.
    let file = job_path.display().to_string().replace(',', ",,");
    let out_run = qemu::mps2_an386(&elf, options)
        .arg("-device")
        .arg(format!(
            "loader,file={file},addr={JOB_ADDR:#x},force-raw=on"
        ))
        .output()
        .context("running qemu-system-arm")?;
    let text = String::from_utf8_lossy(&out_run.stdout);
    if !out_run.status.success() || !text.lines().any(|l| l == "done") {
        bail!(
            "model-bench firmware failed ({}):\n{text}{}",
            out_run.status,
            String::from_utf8_lossy(&out_run.stderr)
        );
    }

    let mut models: Vec<Value> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let entry_of = |f: &BTreeMap<&str, &str>| -> Result<&Entry> {
        let i = int(f, "model")? as usize;
        entries.get(i).context("model index")
    };
    let mut tables = Value::Null;
    for line in text.lines() {
        let f = fields(line);
        if line.starts_with("tables ") {
            // The RAM a parsed `Model` takes on the Cortex-M4, and the bounds behind it.
            let mut t = serde_json::Map::new();
            for key in [
                "model_bytes",
                "tensor_bytes",
                "op_bytes",
                "max_tensors",
                "max_ops",
            ] {
                t.insert(key.into(), json!(int(&f, key)?));
            }
            tables = Value::Object(t);
        } else if line.starts_with("model=") {
            let e = entry_of(&f)?;
            let cases = int(&f, "cases")?;
            let ticks = int(&f, "ticks")? as f64;
            let macs = int(&f, "macs")?;
            let instructions = ticks * INSTRUCTIONS_PER_TICK / cases as f64;
            let us = |key: &str| -> Result<u64> { Ok(int(&f, key)? * NS_PER_TICK / 1000) };
            let p99_us = us("p99_ticks")?;
            let (checked, mismatched) = (int(&f, "checked")?, int(&f, "mismatched")?);
            if e.reference.is_some() && (checked != cases || mismatched != 0) {
                problems.push(format!(
                    "{}: {mismatched} of {cases} outputs differ from {} ({checked} checked)",
                    e.name,
                    rel(e.reference.as_deref().unwrap_or(Path::new("")))
                ));
            }
            let correct = int(&f, "correct")?;
            let has_set = e.vset.is_some();
            models.push(json!({
                "name": e.name,
                "file": rel(&e.file),
                "inputs": e.inputs,
                "bytes": int(&f, "bytes")?,
                "arena_bytes": int(&f, "arena")?,
                "macs": macs,
                "samples": cases,
                "correct": if has_set { Value::from(correct) } else { Value::Null },
                "accuracy": if has_set { Value::from(correct as f64 / cases as f64) } else { Value::Null },
                "p50_us": us("p50_ticks")?,
                "p99_us": p99_us,
                "max_us": us("max_ticks")?,
                "instructions": instructions.round() as u64,
                "instructions_per_mac": if macs > 0 { Value::from((instructions / macs as f64 * 100.0).round() / 100.0) } else { Value::Null },
                "reference": e.reference.as_deref().map(rel),
                "outputs_checked": checked,
                "outputs_mismatched": mismatched,
                "accuracy_ok": Value::Null,
                "latency_ok": p99_us <= MAX_P99_US,
                "verdict": Value::Null,
                "ops": [],
            }));
        } else if line.starts_with("verdict ") {
            let m = models.last_mut().context("verdict line before its model")?;
            m["accuracy_ok"] = (f.get("accuracy_ok") == Some(&"1")).into();
            m["latency_ok"] = (f.get("latency_ok") == Some(&"1")).into();
            m["verdict"] = f.get("verdict").copied().unwrap_or_default().into();
        } else if line.starts_with("op ") {
            let m = models.last_mut().context("op line before its model")?;
            let runs = int(&f, "runs")?.max(1) as f64;
            let instructions = int(&f, "ticks")? as f64 * INSTRUCTIONS_PER_TICK / runs;
            let macs = int(&f, "macs")? as f64;
            m["ops"].as_array_mut().context("ops")?.push(json!({
                "index": int(&f, "index")?,
                "kind": f.get("kind").copied().unwrap_or_default(),
                "macs": macs as u64,
                "instructions": instructions.round() as u64,
                "instructions_per_mac": if macs > 0.0 { Value::from((instructions / macs * 10.0).round() / 10.0) } else { Value::Null },
            }));
        } else if line.starts_with("refused ") {
            let e = entry_of(&f)?;
            let reason = line.split_once("reason=").map_or("", |(_, r)| r);
            problems.push(format!("{}: refused on the board: {reason}", e.name));
        } else if line.starts_with("mismatch ") {
            let e = entry_of(&f)?;
            println!("{}: first differing output: {line}", e.name);
        }
    }

    let size = Command::new("arm-none-eabi-size")
        .arg(&elf)
        .output()
        .context("arm-none-eabi-size")?;
    let text_bytes: u64 = String::from_utf8_lossy(&size.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let runtime_bytes = runtime_code_bytes(&elf)?;
    let report = json!({
        "board": "qemu mps2-an386 (Cortex-M4F), -icount shift=4: 62.5 MIPS",
        "policy": {"min_accuracy": 0.9, "max_p99_latency_us": MAX_P99_US},
        "firmware_text_bytes": text_bytes,
        "runtime_code_bytes": runtime_bytes,
        "model_tables": tables,
        "models": models,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| out.display().to_string())?;

    print_table(&models);
    println!("model runtime code: {runtime_bytes} bytes; bench firmware .text: {text_bytes} bytes");
    println!("wrote {}", rel(&out));

    for e in &entries {
        if !models.iter().any(|m| m["name"] == e.name.as_str()) && problems.is_empty() {
            problems.push(format!("{}: no figures from the board", e.name));
        }
    }
    if args.model.is_none() {
        let verdict = |name: &str| {
            models
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| (m["accuracy_ok"] == true, m["latency_ok"] == true))
        };
        for (name, want) in FIXTURES {
            if verdict(name) != Some(*want) {
                problems.push(format!(
                    "{name}: (accuracy ok, latency ok) = {:?}, expected {want:?}",
                    verdict(name)
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("model benchmark failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

fn print_table(models: &[Value]) {
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>9}  verdict",
        "model", "bytes", "arena", "MACs", "instr/MAC", "accuracy", "p99 (ms)", "max (ms)"
    );
    for m in models {
        let accuracy = m["accuracy"]
            .as_f64()
            .map_or("-".to_owned(), |a| format!("{:.1}%", a * 100.0));
        println!(
            "{:<12} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8.2} {:>9.2}  {}",
            m["name"].as_str().unwrap_or(""),
            m["bytes"].as_u64().unwrap_or(0),
            m["arena_bytes"].as_u64().unwrap_or(0),
            m["macs"].as_u64().unwrap_or(0),
            m["instructions_per_mac"]
                .as_f64()
                .map_or("-".to_owned(), |v| format!("{v:.2}")),
            accuracy,
            m["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
            m["max_us"].as_f64().unwrap_or(0.0) / 1000.0,
            m["verdict"].as_str().unwrap_or("-")
        );
        for op in m["ops"].as_array().into_iter().flatten() {
            if let Some(per_mac) = op["instructions_per_mac"].as_f64() {
                println!(
                    "    {:<18} {:>8} MACs {:>10} instructions {:>6.1} per MAC",
                    op["kind"].as_str().unwrap_or(""),
                    op["macs"].as_u64().unwrap_or(0),
                    op["instructions"].as_u64().unwrap_or(0),
                    per_mac
                );
            }
        }
    }
}
