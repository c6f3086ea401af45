//! `fleetctl devices`: list, show and enrol devices.

use crate::connection::{Client, cell, print_json, print_table};
use crate::units::{ms_us, percent_bp, rejected};
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Devices with their firmware and model versions, slot, last seen and validation figures.
    ///
    /// Example: fleetctl devices list --tag line-1
    List {
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One device, with its reports.
    ///
    /// Example: fleetctl devices show node-07
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enrol a device; its credential is printed once (the server keeps only a hash).
    ///
    /// Example: fleetctl devices enroll --id node-41 --board mps2-an386 --tag line-1
    Enroll {
        #[arg(long)]
        id: String,
        #[arg(long)]
        board: String,
        /// Tag (repeat for several).
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

fn ago(ms: &Value) -> String {
    let Some(t) = ms.as_i64() else {
        return "never".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = (now - t).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

pub fn run(cmd: DevicesCommand, client: &Client) -> Result<()> {
    match cmd {
        DevicesCommand::List { tag, json } => {
            let all = client.get("/api/devices")?;
            let devices: Vec<Value> = all
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| {
                    tag.as_ref()
                        .is_none_or(|t| d["tags"].as_str().unwrap_or("").split(',').any(|x| x == t))
                })
                .cloned()
                .collect();
            if json {
                return print_json(&Value::Array(devices));
            }
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    vec![
                        cell(&d["id"]),
                        cell(&d["board"]),
                        cell(&d["tags"]),
                        cell(&d["firmware_version"]),
                        cell(&d["model_version"]),
                        match d["model_slot"].as_i64() {
                            Some(0) => "A".into(),
                            Some(_) => "B".into(),
                            None => "-".into(),
                        },
                        percent_bp(&d["model_validation"]["accuracy_bp"]),
                        ms_us(&d["model_validation"]["p99_us"]),
                        rejected(&d["last_rejected"]),
                        ago(&d["last_seen_ms"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "BOARD",
                    "TAGS",
                    "FIRMWARE",
                    "MODEL",
                    "SLOT",
                    "ACCURACY",
                    "P99",
                    "LAST REJECTED",
                    "LAST SEEN",
                ],
                &rows,
            );
            Ok(())
        }
        DevicesCommand::Show { id, json } => {
            let d = client.get(&format!("/api/devices/{id}"))?;
            let reports = client.get(&format!("/api/devices/{id}/reports"))?;
            if json {
                return print_json(&json!({ "device": d, "reports": reports }));
            }
            for (k, v) in [
                ("id", cell(&d["id"])),
                ("board", cell(&d["board"])),
                ("tags", cell(&d["tags"])),
                ("firmware", cell(&d["firmware_version"])),
                ("model", cell(&d["model_version"])),
                (
                    "accuracy",
                    percent_bp(&d["model_validation"]["accuracy_bp"]),
                ),
                ("p99", ms_us(&d["model_validation"]["p99_us"])),
                ("rejected", rejected(&d["last_rejected"])),
                ("last seen", ago(&d["last_seen_ms"])),
            ] {
                println!("{k:<10} {v}");
            }
            let rows: Vec<Vec<String>> = reports
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        cell(&r["seq"]),
                        cell(&r["release_id"]),
                        cell(&r["component"]),
                        cell(&r["version"]),
                        cell(&r["step"]),
                        cell(&r["detail"]),
                    ]
                })
                .collect();
            println!();
            print_table(
                &["SEQ", "RELEASE", "COMPONENT", "VERSION", "STEP", "DETAIL"],
                &rows,
            );
            Ok(())
        }
        DevicesCommand::Enroll {
            id,
            board,
            tags,
            json,
        } => {
            let v = client.post_json(
                "/api/devices",
                &json!({ "id": id, "board": board, "tags": tags }),
            )?;
            if json {
                return print_json(&v);
            }
            println!("enrolled {}", cell(&v["id"]));
            println!("credential: {}", cell(&v["credential"]));
            println!("(shown once: the server keeps only its hash; put it on the device)");
            Ok(())
        }
    }
}
