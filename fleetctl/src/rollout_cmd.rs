//! `fleetctl rollout`: create staged rollouts, follow them (a progress bar per stage, the live
//! gate figures against their thresholds), pause, resume, abort, roll back.

use crate::artifact_cmd::parse_fraction_bp;
use crate::connection::{Client, cell, print_json, print_table};
use crate::units::{ms_us, percent_bp};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes of `rollout status --wait`.
pub const EXIT_COMPLETED: u8 = 0;
pub const EXIT_HALTED: u8 = 2;
pub const EXIT_ABORTED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a staged rollout of an uploaded artifact.
    ///
    /// Example: fleetctl rollout create --artifact 3 --selector tag=line-1 --stages 5%,25%,100%
    /// --soak 10m --min-accuracy 0.9 --max-latency-ms 10 --max-failure-rate 2%
    /// --max-accuracy-drop 0.02
    Create(CreateArgs),
    /// Rollouts, newest first.
    ///
    /// Example: fleetctl rollout list --json
    List {
        #[arg(long)]
        json: bool,
    },
    /// A rollout's stages, gate figures against their thresholds, and events.
    ///
    /// Example: fleetctl rollout status 4 --watch --wait
    #[command(
        after_help = "Exit codes with --wait: 0 the rollout completed; 2 it halted (a gate failed, or it was rolled back); 3 it was aborted; 1 an error (server unreachable, refused, unknown rollout)."
    )]
    Status {
        id: i64,
        /// Redraw every second until the rollout ends.
        #[arg(long)]
        watch: bool,
        /// Wait for the end; the exit code tells how it ended (see below).
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Hold a rollout where it is (devices that have it keep it).
    ///
    /// Example: fleetctl rollout pause 4
    Pause { id: i64 },
    /// Continue a paused rollout.
    ///
    /// Example: fleetctl rollout resume 4
    Resume { id: i64 },
    /// Stop a rollout: no more devices are offered it; devices that have it keep it.
    ///
    /// Example: fleetctl rollout abort 4
    Abort { id: i64 },
    /// Stop a rollout, mark the release bad and send every device that took it back.
    ///
    /// Example: fleetctl rollout rollback 4
    Rollback { id: i64 },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Artifact id (`fleetctl artifact list`).
    #[arg(long)]
    artifact: i64,
    /// Which devices: tag=T (repeat: all of them) or board=B.
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    selectors: Vec<String>,
    /// Cumulative stage sizes, comma-separated: percentages of the selected devices or counts.
    #[arg(long, value_name = "5%,25%,100%", default_value = "100%")]
    stages: String,
    /// How long each stage runs after its last device finished: 90s, 10m, 2h.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration_s)]
    soak: f64,
    /// Lowest validation accuracy any device may show: 0.9 or 90%.
    #[arg(long = "min-accuracy", value_name = "X", value_parser = parse_fraction_bp)]
    min_accuracy: Option<u16>,
    /// Highest p99 inference latency any device may show, milliseconds.
    #[arg(long = "max-latency-ms", value_name = "MS", default_value_t = 10.0)]
    max_latency_ms: f64,
    /// Largest share of a stage's devices that may fail: 0.02 or 2%.
    #[arg(long = "max-failure-rate", value_name = "X", value_parser = parse_fraction_bp)]
    max_failure_rate: Option<u16>,
    /// Largest accuracy drop against the model each device replaces: 0.02 or 2%.
    #[arg(long = "max-accuracy-drop", value_name = "X", value_parser = parse_fraction_bp)]
    max_accuracy_drop: Option<u16>,
    /// Validated reports a stage needs before it passes.
    #[arg(long = "min-reports", value_name = "N")]
    min_reports: Option<u32>,
    #[arg(long)]
    json: bool,
}

/// `90s`, `10m`, `2h`, `1d` or plain seconds.
fn parse_duration_s(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: give a duration like 90s, 10m or 2h"))?;
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    if n.is_nan() || n < 0.0 {
        return Err(format!("{s:?}: a duration is not negative"));
    }
    Ok(n * scale)
}

fn fraction(bp: Option<u16>) -> Value {
    bp.map_or(Value::Null, |b| json!(f64::from(b) / 10_000.0))
}

fn create(args: CreateArgs, client: &Client) -> Result<()> {
    let mut tags = Vec::new();
    let mut board = None;
    for s in &args.selectors {
        match s.split_once('=') {
            Some(("tag", t)) if !t.is_empty() => tags.push(t.to_owned()),
            Some(("board", b)) if !b.is_empty() => board = Some(b.to_owned()),
            _ => bail!("selector {s:?}: give tag=T or board=B"),
        }
    }
    let stages: Vec<&str> = args.stages.split(',').map(str::trim).collect();
    let mut body = json!({
        "artifact_id": args.artifact,
        "selector": { "tags": tags, "board": board },
        "stages": stages,
        "soak_seconds": args.soak,
        "max_latency_ms": args.max_latency_ms,
    });
    for (k, v) in [
        ("min_accuracy", fraction(args.min_accuracy)),
        ("max_failure_rate", fraction(args.max_failure_rate)),
        ("max_accuracy_drop", fraction(args.max_accuracy_drop)),
        ("min_reports", json!(args.min_reports)),
    ] {
        if !v.is_null() {
            body[k] = v;
        }
    }
    let v = client.post_json("/api/rollouts", &body)?;
    if args.json {
        return print_json(&v);
    }
    let planned: Vec<String> = v["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| cell(&s["planned"]))
        .collect();
    println!(
        "rollout {} started: {} {} {} to {} devices in stages of {}",
        v["id"],
        cell(&v["artifact"]["kind"]),
        cell(&v["artifact"]["name"]),
        cell(&v["artifact"]["version"]),
        v["devices"].as_array().map_or(0, Vec::len),
        planned.join(" + ")
    );
    // A model: how many selected devices cannot run the runtime ABI it needs (the server's
    // count from their check-ins; they refuse it before writing).
    let c = &v["compatibility"];
    if !c.is_null() {
        println!(
            "runtime ABI {}: {} of the selected devices cannot run it (older firmware), {} of unknown ABI",
            cell(&c["required_abi"]),
            cell(&c["too_old"]),
            cell(&c["unknown"])
        );
    }
    Ok(())
}

fn stage_size(size: &Value) -> String {
    if let Some(p) = size["percent"].as_u64() {
        format!("{p}%")
    } else {
        cell(&size["count"])
    }
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0);
    format!(
        "[{}{}]",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

/// A stage's gate checks as the server made them, one row each: label, figure, threshold,
/// verdict. Only presentation is decided here (labels and units); the verdict is the engine's.
pub fn gate_rows(gates: &Value) -> Vec<(&'static str, String, String, &'static str)> {
    gates
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let (label, unit, cmp): (&'static str, fn(&Value) -> String, &str) =
                match g["gate"].as_str().unwrap_or("") {
                    "min_accuracy" => ("min accuracy", percent_bp, ">="),
                    "max_p99_latency" => ("max p99 latency", ms_us, "<="),
                    "max_failure_rate" => ("max failure rate", percent_bp, "<="),
                    "min_reports" => ("validated reports", cell, ">="),
                    "max_accuracy_drop" => ("max accuracy drop", percent_bp, "<="),
                    _ => ("(unknown gate)", cell, "?"),
                };
            let verdict = match g["verdict"].as_str() {
                Some("ok") => "ok",
                Some("failed") => "FAILED",
                _ => "",
            };
            (
                label,
                unit(&g["figure"]),
                format!("{cmp} {}", unit(&g["threshold"])),
                verdict,
            )
        })
        .collect()
}

/// The status as text: header, a bar per stage, the gates of the current stage, events.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let gate = v["halted_gate"]
        .as_str()
        .map(|g| format!(" (gate {g} failed)"))
        .unwrap_or_default();
    out += &format!(
        "rollout {}: {} {} {}: {}{gate}\n",
        v["id"],
        cell(&v["artifact"]["kind"]),
        cell(&v["artifact"]["name"]),
        cell(&v["artifact"]["version"]),
        cell(&v["state"]),
    );
    let current = v["stage"].as_i64().unwrap_or(0);
    for s in v["stages"].as_array().into_iter().flatten() {
        let f = &s["figures"];
        let planned = s["planned"].as_u64().unwrap_or(0);
        let done = f["confirmed"].as_u64().unwrap_or(0) + f["failed"].as_u64().unwrap_or(0);
        let index = s["index"].as_i64().unwrap_or(0);
        let note = if index > current || (f["devices"] == 0 && planned > 0) {
            "not started".to_owned()
        } else {
            format!(
                "confirmed {} failed {} pending {}",
                f["confirmed"], f["failed"], f["pending"]
            )
        };
        out += &format!(
            "  stage {} ({:>4}) {} {done:>3}/{planned:<3} {note}\n",
            index + 1,
            stage_size(&s["size"]),
            bar(done, planned),
        );
    }
    if let Some(s) = v["stages"].get(current as usize) {
        out += &format!("  gates of stage {}:\n", current + 1);
        for (name, figure, threshold, verdict) in gate_rows(&s["gates"]) {
            out += &format!("    {name:<18} {figure:>10}  {threshold:<12} {verdict}\n");
        }
    }
    out += &bytes_sent(&v["devices"]);
    out += "  events:\n";
    for e in v["events"].as_array().into_iter().flatten() {
        out += &format!(
            "    {:>14}  stage {}  {}\n",
            cell(&e["kind"]),
            e["stage"].as_i64().unwrap_or(0) + 1,
            cell(&e["detail"])
        );
    }
    out
}

/// Devices listed one per line under the bytes-sent total, at most.
const SHOWN_DEVICES: usize = 20;

/// What the server sent the rollout's devices (`bytes_sent`: chunks and ranges, plain or a
/// stream): the total, then each device.
fn bytes_sent(devices: &Value) -> String {
    let Some(devices) = devices.as_array().filter(|d| !d.is_empty()) else {
        return String::new();
    };
    let bytes = |d: &Value| d["bytes_sent"].as_u64().unwrap_or(0);
    let total: u64 = devices.iter().map(bytes).sum();
    let mut out = format!(
        "  bytes sent: {total} to {} device{}\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    );
    for d in devices.iter().take(SHOWN_DEVICES) {
        out += &format!(
            "    {:<24} {:<10} {:>10}\n",
            cell(&d["device_id"]),
            cell(&d["state"]),
            bytes(d)
        );
    }
    if devices.len() > SHOWN_DEVICES {
        out += &format!("    ... and {} more\n", devices.len() - SHOWN_DEVICES);
    }
    out
}

fn finished(v: &Value) -> bool {
    !matches!(v["state"].as_str(), Some("running" | "paused"))
}

fn exit_code(v: &Value) -> ExitCode {
    ExitCode::from(match v["state"].as_str() {
        Some("completed") => EXIT_COMPLETED,
        Some("aborted") => EXIT_ABORTED,
        _ => EXIT_HALTED,
    })
}

fn status(id: i64, watch: bool, wait: bool, json: bool, client: &Client) -> Result<ExitCode> {
    let path = format!("/api/rollouts/{id}");
    let tty = std::io::stdout().is_terminal();
    loop {
        let v = client.get(&path)?;
        let last = finished(&v) || !(watch || wait);
        if watch || last {
            if json {
                print_json(&v)?;
            } else {
                if watch && tty {
                    // Redraw in place on a terminal; append in logs and pipes.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", render(&v));
            }
        }
        if last {
            return Ok(if wait {
                exit_code(&v)
            } else {
                ExitCode::SUCCESS
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn run(cmd: RolloutCommand, client: &Client) -> Result<ExitCode> {
    let action = |id: i64, verb: &str| -> Result<ExitCode> {
        let v = client.post_json(&format!("/api/rollouts/{id}/{verb}"), &Value::Null)?;
        println!("rollout {id}: {}", cell(&v["state"]));
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        RolloutCommand::Create(args) => create(args, client).map(|()| ExitCode::SUCCESS),
        RolloutCommand::List { json } => {
            let v = client.get("/api/rollouts")?;
            if json {
                print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let stages = r["stages"].as_array().map_or(0, Vec::len);
                    vec![
                        cell(&r["id"]),
                        format!(
                            "{} {} {}",
                            cell(&r["artifact"]["kind"]),
                            cell(&r["artifact"]["name"]),
                            cell(&r["artifact"]["version"])
                        ),
                        cell(&r["state"]),
                        format!("{}/{stages}", r["stage"].as_i64().unwrap_or(0) + 1),
                        cell(&r["halted_gate"]),
                        cell(&r["created_by"]),
                    ]
                })
                .collect();
            print_table(
                &["ID", "RELEASE", "STATE", "STAGE", "FAILED GATE", "BY"],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Status {
            id,
            watch,
            wait,
            json,
        } => status(id, watch, wait, json, client),
        RolloutCommand::Pause { id } => action(id, "pause"),
        RolloutCommand::Resume { id } => action(id, "resume"),
        RolloutCommand::Abort { id } => action(id, "abort"),
        RolloutCommand::Rollback { id } => action(id, "rollback"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("90s"), Ok(90.0));
        assert_eq!(parse_duration_s("10m"), Ok(600.0));
        assert_eq!(parse_duration_s("2h"), Ok(7200.0));
        assert_eq!(parse_duration_s("15"), Ok(15.0));
        assert!(parse_duration_s("10y").is_err());
        assert!(parse_duration_s("-1s").is_err());
        assert!(parse_duration_s("soon").is_err());
    }

    #[test]
    fn bytes_sent_are_shown_per_device_with_their_total() {
        let devices = serde_json::json!([
            {"device_id": "node-1", "state": "confirmed", "bytes_sent": 2858},
            {"device_id": "node-2", "state": "offered", "bytes_sent": 0},
        ]);
        assert_eq!(
            bytes_sent(&devices),
            "  bytes sent: 2858 to 2 devices\n    node-1                   confirmed        2858\n    node-2                   offered             0\n"
        );
        assert_eq!(bytes_sent(&serde_json::json!([])), "");
        let many: Vec<Value> = (0..25)
            .map(|i| serde_json::json!({"device_id": format!("d-{i}"), "state": "planned", "bytes_sent": 1}))
            .collect();
        let text = bytes_sent(&Value::Array(many));
        assert!(
            text.starts_with("  bytes sent: 25 to 25 devices\n"),
            "{text}"
        );
        assert!(text.ends_with("    ... and 5 more\n"), "{text}");
        assert_eq!(text.lines().count(), 1 + 20 + 1);
    }

    #[test]
    fn a_stage_bar_fills_with_finished_devices() {
        assert_eq!(bar(0, 8), "[....................]");
        assert_eq!(bar(4, 8), "[##########..........]");
        assert_eq!(bar(8, 8), "[####################]");
        assert_eq!(bar(0, 0), "[....................]");
    }
}
