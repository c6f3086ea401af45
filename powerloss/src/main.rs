//! `powerloss`: runs the power-loss matrix, prints it and writes target/bench/powerloss.json.
//! Usage: powerloss [--quick] [--json PATH]

use anyhow::{Context, Result, bail};
use serde_json::json;

fn cost_json(c: &powerloss::SwapCost) -> serde_json::Value {
    json!({
        "geometry": c.geometry, "image_bytes": c.image_bytes, "slot_bytes": c.slot_bytes,
        "erases": c.erases, "writes": c.writes, "bytes_written": c.bytes_written,
        "estimated_ms": (c.estimated_ms * 10.0).round() / 10.0,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let started = std::time::Instant::now();
    let mut results = powerloss::run_all(quick);
    results.push(powerloss::model_update::matrix(
        "model-update",
        "per_tensor",
        true,
    ));
    results.push(powerloss::model_update::matrix(
        "model-update-rejected",
        "regressed",
        false,
    ));
    use powerloss::model_update::{WireKind, matrix_via};
    results.push(matrix_via(
        "model-update-delta",
        "per_tensor",
        true,
        WireKind::Delta,
    ));
    results.push(matrix_via(
        "model-update-delta-rejected",
        "regressed",
        false,
        WireKind::Delta,
    ));
    results.push(matrix_via(
        "model-update-compressed",
        "per_tensor",
        true,
        WireKind::Compressed,
    ));
    // The device library's path (frames, session, validation with the line going on): every
    // operation, or every 7th in a quick run.
    let stride = if quick { 7 } else { 1 };
    results.push(powerloss::device_update::matrix(
        "device-model-update",
        "per_tensor",
        true,
        stride,
    ));
    results.push(powerloss::device_update::matrix(
        "device-model-update-rejected",
        "regressed",
        false,
        stride,
    ));
    results.push(powerloss::firmware_delta::matrix(
        "firmware-update-delta",
        false,
    ));
    results.push(powerloss::firmware_delta::matrix(
        "firmware-update-delta-corrupt",
        true,
    ));
    let (mut points, mut failures, mut known) = (0, 0, 0);
    println!(
        "{:<22} {:<28} {:>10} {:>9}",
        "scenario", "geometry", "cut points", "failures"
    );
    for r in &results {
        println!(
            "{:<22} {:<28} {:>10} {:>9}",
            r.name, r.geometry, r.cut_points, r.failures
        );
        if let Some(f) = &r.first_failure {
            println!("    first failure: {f}");
        }
        points += r.cut_points;
        if r.known_limitation {
            known += r.failures;
        } else {
            failures += r.failures;
        }
    }
    let (m_erases, m_writes, m_bytes) = powerloss::model_update::update_cost();
    println!(
        "model update (model and validation set, 29 KiB): {m_erases} erases, {m_writes} writes, {m_bytes} bytes written"
    );
    let costs: Vec<_> = [64 * 1024, 255 * 1024 - 512]
        .iter()
        .map(|&n| powerloss::update_cost(&layout::MPS2_AN386, n))
        .collect();
    for c in &costs {
        println!(
            "update of a {} KiB image in a {} KiB slot: {} erases, {} writes, {} bytes written",
            c.image_bytes / 1024,
            c.slot_bytes / 1024,
            c.erases,
            c.writes,
            c.bytes_written
        );
    }
    let (swaps, reverts) = powerloss::swap_costs();
    println!(
        "{:<30} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9}",
        "swap (the boot that swaps)", "image", "slot", "erases", "writes", "bytes", "est. ms"
    );
    for (what, list) in [("swap", &swaps), ("revert", &reverts)] {
        for c in list {
            println!(
                "{:<30} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9.0}",
                format!("{what} {}", c.geometry),
                c.image_bytes,
                c.slot_bytes,
                c.erases,
                c.writes,
                c.bytes_written,
                c.estimated_ms
            );
        }
    }
    println!(
        "cut points: {points}, failures: {failures} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if known > 0 {
        println!("known limitation: {known} failures");
    }
    if let Some(path) = json_path {
        let doc = json!({
            "scenarios": results.iter().map(|r| json!({
                "name": r.name, "geometry": r.geometry, "cut_points": r.cut_points, "failures": r.failures,
                "first_failure": r.first_failure, "known_limitation": r.known_limitation,
            })).collect::<Vec<_>>(),
            "cut_points": points,
            "failures": failures,
            "known_limitation_failures": known,
            "model_update_cost": {"erases": m_erases, "writes": m_writes, "bytes_written": m_bytes},
            "update_cost": costs.iter().map(|c| json!({
                "image_bytes": c.image_bytes, "slot_bytes": c.slot_bytes, "erases": c.erases,
                "writes": c.writes, "bytes_written": c.bytes_written,
            })).collect::<Vec<_>>(),
            "swap_cost": swaps.iter().map(cost_json).collect::<Vec<_>>(),
            "revert_cost": reverts.iter().map(cost_json).collect::<Vec<_>>(),
            "estimated_ms_basis": {
                "part": "STM32L4R5", "page_erase_ms": powerloss::scenarios::L4R5_PAGE_ERASE_MS,
                "double_word_program_us": powerloss::scenarios::L4R5_DOUBLE_WORD_US,
            },
        });
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| path.clone())?;
    }
    if failures > 0 {
        bail!("{failures} power-loss failures");
    }
    Ok(())
}
