//! `hil`: runs the hardware-in-the-loop scenarios on a line of N emulated boards (QEMU
//! mps2-an386 running the real bootloader and agent firmware) behind the gateway and the fleet
//! server, prints a table and writes target/bench/hil.json. Run by `cargo xtask hil`, which
//! builds the firmware and the binaries first.

mod board;
mod console;
mod inference;
mod line;
mod releases;
mod scenarios;
mod tamper;

use anyhow::{Context, Result};
use clap::Parser;
use line::{Binaries, Line};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Hardware-in-the-loop rollback scenarios on emulated Cortex-M4 boards")]
struct Args {
    /// Boards on the line.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Seed of the power cuts' timing.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the line's files go (flash files, consoles, logs); emptied first.
    #[arg(long, default_value = "target/hil")]
    dir: PathBuf,
    /// Results file.
    #[arg(long, default_value = "target/bench/hil.json")]
    out: PathBuf,
    /// Directory of the fleet-server and gateway binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Directory of the firmware builds (thumbv7em-none-eabihf).
    #[arg(long, default_value = "firmware/target/thumbv7em-none-eabihf")]
    firmware_dir: PathBuf,
    /// Run only these scenarios (comma-separated names; provisioning always runs), for
    /// debugging one: later scenarios expect the state earlier ones leave.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

struct Outcome {
    name: &'static str,
    passed: bool,
    seconds: f64,
    detail: String,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    // Boards run in directories of their own: every path they are given is absolute.
    args.bin_dir = std::path::absolute(&args.bin_dir)?;
    args.firmware_dir = std::path::absolute(&args.firmware_dir)?;
    let bins = Binaries {
        server: args.bin_dir.join("fleet-server"),
        gateway: args.bin_dir.join("gateway"),
        bootloader: args.firmware_dir.join("boot/boot-mps2"),
        agent: args.firmware_dir.join("release/agent-mps2.bin"),
        agent_slow: args.firmware_dir.join("release/agent-mps2-slow.bin"),
        agent_hang: args.firmware_dir.join("release/agent-mps2-hang.bin"),
        agent_changed: args.firmware_dir.join("release/agent-mps2-change.bin"),
    };
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{}", p.display()));
    let (good, slow, hang, changed) = (
        read(&bins.agent)?,
        read(&bins.agent_slow)?,
        read(&bins.agent_hang)?,
        read(&bins.agent_changed)?,
    );
    let begun = Instant::now();
    let _ = std::fs::remove_dir_all(&args.dir);
    let dir = std::path::absolute(&args.dir)?;
    let mut line = Line::start(&dir, bins)?;
    println!("hil: {} boards, files in {}", args.nodes, dir.display());

    let mut outcomes = Vec::new();
    let only = args.only.clone();
    let mut run = |name: &'static str, line: &mut Line, f: &dyn Fn(&mut Line) -> Result<String>| {
        if name != "provision" && !only.is_empty() && !only.iter().any(|o| o == name) {
            return true;
        }
        let started = Instant::now();
        let result = f(line);
        let seconds = started.elapsed().as_secs_f64();
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        println!(
            "hil: {name:<16} {:<6} {seconds:>7.1} s  {detail}",
            if passed { "passed" } else { "FAILED" }
        );
        outcomes.push(Outcome {
            name,
            passed,
            seconds,
            detail,
        });
        passed
    };
    let nodes = args.nodes;
    if run("provision", &mut line, &|l| {
        scenarios::provision(l, nodes, &good)
    }) {
        run("good-model", &mut line, &scenarios::good_model);
        run("less-accurate-model", &mut line, &|l| {
            scenarios::rejected_model(
                l,
                &fleet_sim::fixtures::REGRESSED,
                artifact::Version::new(1, 2, 0),
                scenarios::Judge::Canaries {
                    long_validation: false,
                },
            )
        });
        run("slow-model", &mut line, &|l| {
            scenarios::rejected_model(
                l,
                &fleet_sim::fixtures::SLOW,
                artifact::Version::new(1, 3, 0),
                scenarios::Judge::Server,
            )
        });
        run("good-firmware", &mut line, &|l| {
            scenarios::good_firmware(l, &good)
        });
        run("bad-firmware", &mut line, &|l| {
            scenarios::bad_firmware(l, &slow, &hang)
        });
        run("delta-firmware", &mut line, &|l| {
            scenarios::delta_firmware(l, &hang, &changed)
        });
        run("power-cuts", &mut line, &|l| {
            scenarios::power_cuts(l, &good, args.seed)
        });
        run("tampered-artifacts", &mut line, &|l| {
            tamper::tampered(l, &good)
        });
        run("gateway-and-server-outage", &mut line, &scenarios::outage);
    }
    let stats = line.gateway_stats();
    let uplink = stats["uplink_bytes"].as_u64().unwrap_or(0);
    let device = stats["device_bytes"].as_u64().unwrap_or(0);
    println!();
    println!("| scenario | nodes | outcome | seconds |");
    println!("|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {nodes} | {} | {:.1} |",
            o.name,
            if o.passed { "passed" } else { "FAILED" },
            o.seconds
        );
    }
    let total = begun.elapsed().as_secs_f64();
    println!("total: {total:.1} s, the line's start and every scenario");
    for (name, value) in &line.figures {
        println!("{name}: {value}");
    }
    println!(
        "gateway: {uplink} bytes from the server, {device} bytes to the boards ({:.1}x saved by its cache)",
        device as f64 / uplink.max(1) as f64
    );
    let json = serde_json::json!({
        "scenarios": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name,
            "nodes": nodes,
            "passed": o.passed,
            "seconds": (o.seconds * 10.0).round() / 10.0,
            "detail": o.detail,
        })).collect::<Vec<_>>(),
        "total_seconds": (total * 10.0).round() / 10.0,
        "figures": line.figures,
        "uplink_bytes": uplink,
        "device_bytes": device,
        "power_cuts": line.boards.iter().map(|b| b.power_cuts).sum::<u32>(),
        "gateway": stats,
    });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&json)?)?;
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    anyhow::ensure!(
        failed == 0 && outcomes.len() == 10,
        "{failed} scenario(s) failed"
    );
    Ok(())
}
