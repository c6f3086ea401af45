//! The demo: fresh keys and signed releases, 48 simulated devices enrolled and running in
//! this process, a staged rollout of a good model that completes, then one of a less accurate
//! model that the canaries reject and one of a slow model that the server's latency gate
//! stops and sends back, each halting by itself.

use anyhow::{Context, Result};
use artifact::{DocumentType, Envelope, TrustRoot, Version};
use ed25519_dalek::SigningKey;
use fleet_sim::operator::Operator;
use fleet_sim::{Faults, Fleet, fixtures, release};
use std::path::Path;
use std::time::Duration;

const MARKER: &str = "demo-data";
const BOARD: &str = "mps2-an386";

/// Makes `data` a fresh demo directory: refuses one that holds something else.
pub fn reset_data(data: &Path) -> Result<()> {
    let marker = data.join(MARKER);
    let empty = std::fs::read_dir(data).map_or(true, |mut d| d.next().is_none());
    if !empty && !marker.exists() {
        anyhow::bail!(
            "{} holds data that the demo did not make; give the demo another --data",
            data.display()
        );
    }
    for f in ["fleet.db", "fleet.db-wal", "fleet.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    for d in ["artifacts", "demo-keys"] {
        let _ = std::fs::remove_dir_all(data.join(d));
    }
    std::fs::create_dir_all(data)?;
    std::fs::write(
        &marker,
        "made by `fleet-server demo`; removed and made again by it\n",
    )?;
    Ok(())
}

/// A fresh signing key and its self-signed trust root, written to DATA/demo-keys (for
/// `fleetctl artifact sign --key` and `fleet-sim --root`).
pub fn keys(data: &Path) -> Result<(SigningKey, TrustRoot)> {
    let dir = data.join("demo-keys");
    let key = keys::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    keys::write_keypair(&dir, "demo", &key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = TrustRoot::single_key(1, keys::public_of(&key));
    let body = root.to_vec().map_err(|e| anyhow::anyhow!("{e}"))?;
    let signed = Envelope::sign(DocumentType::Root, &body, std::slice::from_ref(&key))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(dir.join("root.cbor"), signed).context("root.cbor")?;
    Ok((key, root))
}

fn rollout_spec(artifact: i64) -> serde_json::Value {
    serde_json::json!({
        "artifact_id": artifact,
        "selector": { "tags": [] },
        "stages": ["10%", "50%", "100%"],
        "soak_seconds": 3,
        "min_accuracy": 0.9,
        "max_latency_ms": 10,
        "max_failure_rate": 0.05,
        "max_accuracy_drop": 0.02,
    })
}

fn say(v: &serde_json::Value) {
    let gate = v["halted_gate"].as_str().unwrap_or("-");
    println!(
        "rollout {} of {} {}: {} (gate {gate})",
        v["id"], v["artifact"]["name"], v["artifact"]["version"], v["state"]
    );
    for e in v["events"].as_array().into_iter().flatten() {
        println!(
            "    {:>16} {}",
            e["kind"].as_str().unwrap_or_default(),
            e["detail"].as_str().unwrap_or_default()
        );
    }
}

/// The scenario, against the server at `base` (HTTPS trusting the certificates of `ca`).
pub fn run(
    base: &str,
    ca: Option<&std::path::Path>,
    token: &str,
    key: &SigningKey,
    root: TrustRoot,
    devices: usize,
) -> Result<()> {
    let op = Operator::with_ca(base, token, ca)?;
    let fleet = Fleet::with_ca(base, root, ca)?;
    fleet_sim::enroll_and_start(&fleet, &op, "node", devices, 4, Faults::default())?;
    println!("{devices} simulated devices enrolled and running");
    let keys = std::slice::from_ref(key);
    let good = op.upload(release::model_bundle(
        &fixtures::GOOD,
        "digits",
        Version::new(1, 0, 0),
        1,
        BOARD,
        release::STRICT,
        keys,
    )?)?;
    let regressed = op.upload(release::model_bundle(
        &fixtures::REGRESSED,
        "digits",
        Version::new(1, 1, 0),
        2,
        BOARD,
        release::STRICT,
        keys,
    )?)?;
    // Signed with a lenient device policy: the devices take it, the server's gate must not.
    let slow = op.upload(release::model_bundle(
        &fixtures::SLOW,
        "digits",
        Version::new(1, 2, 0),
        3,
        BOARD,
        release::LENIENT,
        keys,
    )?)?;
    for artifact in [good, regressed, slow] {
        let id = op.rollout(&rollout_spec(artifact))?;
        println!("rollout {id} started");
        op.wait_rollout(id, Duration::from_secs(600))?;
        let v = op.wait_reverted(id, Duration::from_secs(120))?;
        say(&v);
    }
    let mut versions = std::collections::BTreeMap::<String, usize>::new();
    for s in fleet.status().values() {
        *versions
            .entry(s.model_version.clone().unwrap_or_else(|| "none".into()))
            .or_default() += 1;
    }
    println!("devices by model version: {versions:?}");
    println!("demo scenario done; the devices keep running (Ctrl-C to stop)");
    Ok(())
}
