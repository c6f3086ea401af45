//! `fleetctl devices`: list, show and enrol devices.

use crate::connection::{Client, cell, print_json, print_table};
use crate::units::{ms_us, percent_bp, rejected};
use agent::provisioning;
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
    /// Example: fleetctl devices enroll --id node-41 --board nrf52840-dk --identity-record node-41.bin
    Enroll {
        #[arg(long)]
        id: String,
        #[arg(long)]
        board: String,
        /// Tag (repeat for several).
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Also write the device's identity record (id and credential) to this file, to be
        /// programmed at the board's identity region (the address is printed).
        #[arg(long, value_name = "FILE")]
        identity_record: Option<std::path::PathBuf>,
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
            identity_record,
            json,
        } => {
            // Checked before the server enrols anything: a record that cannot be made would
            // leave an enrolled device without its credential.
            let layout = match &identity_record {
                Some(_) => Some(identity_layout(&board, &id)?),
                None => None,
            };
            let v = client.post_json(
                "/api/devices",
                &json!({ "id": id, "board": board, "tags": tags }),
            )?;
            let credential = v["credential"].as_str().unwrap_or_default();
            let written = match (&identity_record, layout) {
                (Some(path), Some(layout)) => {
                    Some(write_identity_record(path, layout, &id, credential)?)
                }
                _ => None,
            };
            if json {
                let mut v = v.clone();
                if let Some(at) = written {
                    v["identity_record_address"] = json!(at);
                }
                return print_json(&v);
            }
            println!("enrolled {}", cell(&v["id"]));
            println!("credential: {}", cell(&v["credential"]));
            println!("(shown once: the server keeps only its hash; put it on the device)");
            if let (Some(path), Some(at)) = (&identity_record, written) {
                println!(
                    "identity record: {} (program it at {at:#010x})",
                    path.display()
                );
            }
            Ok(())
        }
    }
}

/// The layout of a board that can hold an identity record for device `id`.
fn identity_layout(board: &str, id: &str) -> Result<&'static layout::Layout> {
    let layout = layout::board(board).ok_or_else(|| {
        let known: Vec<&str> = layout::BOARDS.iter().map(|l| l.board).collect();
        anyhow::anyhow!(
            "no flash layout for board {board:?} (known: {})",
            known.join(", ")
        )
    })?;
    if id.is_empty()
        || id.len() > provisioning::MAX_DEVICE_ID
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        anyhow::bail!(
            "device id {id:?} cannot be provisioned: 1 to {} printable characters without spaces",
            provisioning::MAX_DEVICE_ID
        );
    }
    Ok(layout)
}

/// Writes the identity record for the board's flash (padded with 0xFF to its write size);
/// returns the address to program it at (the flash offset where the flash is not mapped).
fn write_identity_record(
    path: &std::path::Path,
    layout: &layout::Layout,
    device_id: &str,
    credential: &str,
) -> Result<u32> {
    let mut record = [0xFF; provisioning::MAX_RECORD];
    let n = provisioning::encode(
        provisioning::Provisioned {
            device_id,
            credential,
        },
        &mut record,
    )
    .map_err(|e| anyhow::anyhow!("identity record: {}", e.as_str()))?;
    let padded = n.div_ceil(layout.write_size as usize) * layout.write_size as usize;
    let mut bytes = record[..n].to_vec();
    bytes.resize(padded, 0xFF);
    std::fs::write(path, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(layout.mapped_at.unwrap_or(0) + layout.identity.offset)
}
