//! What the operator API shows of devices and artifacts beyond their rows: a device's running
//! model with its own validation figures and the last release it rejected (labelled with its
//! version), and an artifact with what its signed manifest says and which devices run it.

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::reports;
use crate::store::{self, Artifact, Device};
use diesel::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A device's validation figures for one model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    pub version: String,
    pub accuracy_bp: Option<i64>,
    pub p99_us: Option<i64>,
}

/// A device as the API shows it: its row (`last_accuracy_bp` and `last_p99_us` are the last
/// figures it sent, whatever they were of), the figures of the model it runs, and the last
/// model release it rejected or was sent back from.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    pub model_validation: Option<Validation>,
    pub last_rejected: Option<Validation>,
}

#[derive(Debug, Queryable)]
struct ModelReport {
    device_id: String,
    version: String,
    step: String,
    detail: String,
}

/// The views of `list`, from the model reports of those devices (one query).
pub fn devices(conn: &mut AnyConnection, list: Vec<Device>) -> QueryResult<Vec<DeviceView>> {
    let ids: Vec<&str> = list.iter().map(|d| d.id.as_str()).collect();
    let rows: Vec<ModelReport> = reports::table
        .filter(reports::device_id.eq_any(&ids))
        .filter(reports::component.eq(artifact::ComponentKind::Model.as_str()))
        .filter(reports::step.eq_any(["validated", "failed", "reverted"]))
        .order((reports::device_id, reports::seq))
        .select((
            reports::device_id,
            reports::version,
            reports::step,
            reports::detail,
        ))
        .load(conn)?;
    let mut by_device: BTreeMap<&str, Vec<&ModelReport>> = BTreeMap::new();
    for r in &rows {
        by_device.entry(r.device_id.as_str()).or_default().push(r);
    }
    Ok(list
        .into_iter()
        .map(|device| {
            let of = by_device
                .get(device.id.as_str())
                .map_or(&[][..], Vec::as_slice);
            let (model_validation, last_rejected) =
                validations(of, device.model_version.as_deref());
            DeviceView {
                device,
                model_validation,
                last_rejected,
            }
        })
        .collect())
}

/// From one device's model reports in order: the latest validation of the version it runs, and
/// the latest validation of a version it then gave up on (failed, rejected or sent back from).
fn validations(
    of: &[&ModelReport],
    running: Option<&str>,
) -> (Option<Validation>, Option<Validation>) {
    // By version: a revert the server asked for names the version, not a release.
    let gave_up: BTreeSet<&str> = of
        .iter()
        .filter(|r| r.step != "validated")
        .map(|r| r.version.as_str())
        .collect();
    let figures = |r: &ModelReport| {
        let v: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
        Validation {
            version: r.version.clone(),
            accuracy_bp: v["accuracy_bp"].as_i64(),
            p99_us: v["p99_us"].as_i64(),
        }
    };
    let validated = || of.iter().rev().filter(|r| r.step == "validated");
    let own = validated()
        .find(|r| Some(r.version.as_str()) == running)
        .map(|r| figures(r));
    let rejected = validated()
        .find(|r| gave_up.contains(r.version.as_str()) && Some(r.version.as_str()) != running)
        .map(|r| figures(r));
    (own, rejected)
}

/// An artifact with what its signed manifest says, who signed it, and which devices run it.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactDetail {
    #[serde(flatten)]
    pub artifact: Artifact,
    pub signing_key_ids: Vec<String>,
    pub components: Vec<serde_json::Value>,
    pub runtime_abi: Option<u32>,
    pub required_abi: Option<u32>,
    pub arena_size: Option<u32>,
    pub policy: Option<serde_json::Value>,
    pub running_on: Vec<String>,
    /// Its FDL1 streams (made at upload): compressed, and deltas from earlier releases.
    pub streams: Vec<crate::streams::Stream>,
}

pub fn artifact_detail(
    conn: &mut AnyConnection,
    root: &artifact::TrustRoot,
    id: i64,
) -> Result<ArtifactDetail, ApiError> {
    let a = store::artifact(conn, id)?.ok_or(ApiError::NotFound("artifact"))?;
    let envelope = a.envelope.clone();
    // Stored only after verification; verified again here so that what is shown is signed.
    let v = root
        .verify_manifest(&envelope)
        .map_err(|e| ApiError::Internal(format!("stored envelope of artifact {id}: {e}")))?;
    let m = &v.manifest;
    let running_on = store::running(conn, &a)?;
    Ok(ArtifactDetail {
        signing_key_ids: v
            .envelope
            .signatures
            .iter()
            .map(|s| s.key_id.to_string())
            .collect(),
        components: m
            .components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "kind": c.kind.as_str(),
                    "name": c.name,
                    "version": c.version.to_string(),
                    "size": c.size,
                    "sha256": hex::encode(c.digest),
                })
            })
            .collect(),
        runtime_abi: m.runtime_abi,
        required_abi: m.required_abi,
        arena_size: m.arena_size,
        policy: m.policy.map(|p| {
            serde_json::json!({
                "min_accuracy_bp": p.min_accuracy_bp,
                "max_p99_latency_us": p.max_p99_latency_us,
                "max_accuracy_drop_bp": p.max_accuracy_drop_bp,
            })
        }),
        running_on,
        streams: crate::streams::of_artifact(conn, id)?,
        artifact: a,
    })
}
