//! Queries: devices and their credentials, artifacts (payloads content-addressed on disk),
//! assignments, reports.

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::{artifacts, assignments, devices, reports};
use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = devices)]
pub struct Device {
    pub id: String,
    pub board: String,
    pub tags: String,
    #[serde(skip)]
    pub credential_sha256: String,
    pub firmware_version: Option<String>,
    pub model_version: Option<String>,
    pub model_slot: Option<i32>,
    pub last_seen_ms: Option<i64>,
    pub last_accuracy_bp: Option<i32>,
    pub last_p99_us: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = artifacts)]
pub struct Artifact {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub version: String,
    pub security_counter: i64,
    pub boards: String,
    #[serde(skip)]
    pub envelope: Vec<u8>,
    pub payload_sha256: String,
    pub payload_len: i64,
    pub created_ms: i64,
    /// Set when a rollout of this release halted: it is offered to no device again.
    pub bad_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = reports)]
pub struct StoredReport {
    pub device_id: String,
    pub seq: i64,
    pub release_id: i64,
    pub component: String,
    pub version: String,
    pub step: String,
    pub detail: String,
    pub received_ms: i64,
}

/// Enrols a device; returns its credential (shown once, stored hashed).
pub fn enroll(
    conn: &mut AnyConnection,
    id: &str,
    board: &str,
    tags: &str,
) -> Result<String, ApiError> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| ApiError::Internal(e.to_string()))?;
    let credential = hex::encode(raw);
    let exists = devices::table.find(id).count().get_result::<i64>(conn)? > 0;
    if exists {
        return Err(ApiError::Conflict("device"));
    }
    diesel::insert_into(devices::table)
        .values((
            devices::id.eq(id),
            devices::board.eq(board),
            devices::tags.eq(tags),
            devices::credential_sha256.eq(sha256_hex(credential.as_bytes())),
        ))
        .execute(conn)?;
    Ok(credential)
}

pub fn device_by_hash(conn: &mut AnyConnection, hash: &str) -> Result<Device, ApiError> {
    devices::table
        .filter(devices::credential_sha256.eq(hash))
        .select(Device::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::Unauthorized)
}

pub fn list_devices(conn: &mut AnyConnection) -> Result<Vec<Device>, ApiError> {
    Ok(devices::table
        .order(devices::id)
        .select(Device::as_select())
        .load(conn)?)
}

/// Where a payload with this digest lives.
pub fn payload_path(data: &Path, sha256: &str) -> PathBuf {
    data.join("artifacts").join(sha256)
}

/// Stores a verified bundle: payloads content-addressed on disk (written through a temporary
/// file and a rename), the manifest in the database.
pub fn insert_artifact(
    conn: &mut AnyConnection,
    data: &Path,
    verified: &artifact::VerifiedBundle<'_>,
) -> Result<Artifact, ApiError> {
    let m = &verified.verified.manifest;
    let primary = m
        .primary()
        .ok_or_else(|| ApiError::Invalid("inconsistent_components", "no component".into()))?;
    let payload: Vec<u8> = verified
        .payloads
        .iter()
        .flat_map(|p| p.iter().copied())
        .collect();
    let digest = sha256_hex(&payload);
    let path = payload_path(data, &digest);
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap_or(data))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &payload)?;
        std::fs::rename(&tmp, &path)?;
    }
    let boards = m.boards.join(",");
    // Re-encoded from the decoded envelope: the signed body is the same bytes.
    let envelope = verified.verified.envelope.to_vec();
    diesel::insert_into(artifacts::table)
        .values((
            artifacts::kind.eq(primary.kind.as_str()),
            artifacts::name.eq(primary.name),
            artifacts::version.eq(primary.version.to_string()),
            artifacts::security_counter.eq(m.security_counter as i64),
            artifacts::boards.eq(boards),
            artifacts::envelope.eq(envelope),
            artifacts::payload_sha256.eq(&digest),
            artifacts::payload_len.eq(payload.len() as i64),
            artifacts::created_ms.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(artifacts::table
        .order(artifacts::id.desc())
        .select(Artifact::as_select())
        .first(conn)?)
}

pub fn artifact(conn: &mut AnyConnection, id: i64) -> Result<Artifact, ApiError> {
    artifacts::table
        .find(id)
        .select(Artifact::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("artifact"))
}

pub fn list_artifacts(conn: &mut AnyConnection) -> Result<Vec<Artifact>, ApiError> {
    Ok(artifacts::table
        .order(artifacts::id)
        .select(Artifact::as_select())
        .load(conn)?)
}

/// Assigns an artifact to a device (the rollout engine's unit of work).
pub fn assign(conn: &mut AnyConnection, device: &str, artifact_id: i64) -> Result<(), ApiError> {
    artifact(conn, artifact_id)?;
    crate::db::write_tx(conn, |conn| {
        diesel::delete(assignments::table.find(device)).execute(conn)?;
        diesel::insert_into(assignments::table)
            .values((
                assignments::device_id.eq(device),
                assignments::artifact_id.eq(artifact_id),
            ))
            .execute(conn)
    })?;
    Ok(())
}

pub fn assignment(conn: &mut AnyConnection, device: &str) -> Result<Option<Artifact>, ApiError> {
    let id: Option<i64> = assignments::table
        .find(device)
        .select(assignments::artifact_id)
        .first(conn)
        .optional()?;
    id.map(|id| artifact(conn, id)).transpose()
}

/// Stores a report once; a redelivered (device, seq) is acknowledged and not stored again.
/// Returns whether it was new.
pub fn insert_report(conn: &mut AnyConnection, r: &protocol::Report<'_>) -> Result<bool, ApiError> {
    let (step, detail) = match r.step {
        protocol::Step::Downloaded => ("downloaded", String::new()),
        protocol::Step::Installed => ("installed", String::new()),
        protocol::Step::Booted => ("booted", String::new()),
        protocol::Step::Validated(f) => ("validated", serde_json::json!({"samples": f.samples, "accuracy_bp": f.accuracy_bp, "p50_us": f.p50_us, "p99_us": f.p99_us}).to_string()),
        protocol::Step::Confirmed => ("confirmed", String::new()),
        protocol::Step::Reverted(reason) => ("reverted", format!("{reason:?}")),
        protocol::Step::Failed(f) => ("failed", format!("{f:?}")),
    };
    let exists = reports::table
        .find((r.device_id, i64::from(r.seq)))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(reports::table)
        .values((
            reports::device_id.eq(r.device_id),
            reports::seq.eq(i64::from(r.seq)),
            reports::release_id.eq(r.release as i64),
            reports::component.eq(r.component.as_str()),
            reports::version.eq(r.version.to_string()),
            reports::step.eq(step),
            reports::detail.eq(detail),
            reports::received_ms.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn reports_of(conn: &mut AnyConnection, device: &str) -> Result<Vec<StoredReport>, ApiError> {
    Ok(reports::table
        .filter(reports::device_id.eq(device))
        .order(reports::seq)
        .select(StoredReport::as_select())
        .load(conn)?)
}

/// The accuracy a device measured when it validated model `version` (its latest such report).
pub fn validated_accuracy(
    conn: &mut AnyConnection,
    device: &str,
    version: &str,
) -> Result<Option<i32>, ApiError> {
    let detail: Option<String> = reports::table
        .filter(reports::device_id.eq(device))
        .filter(reports::component.eq("model"))
        .filter(reports::version.eq(version))
        .filter(reports::step.eq("validated"))
        .order(reports::seq.desc())
        .select(reports::detail)
        .first(conn)
        .optional()?;
    Ok(detail
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v["accuracy_bp"].as_i64())
        .map(|a| a as i32))
}

/// Whether a device gave up on a release (failed or reverted): it is not offered again.
pub fn gave_up(conn: &mut AnyConnection, device: &str, release: i64) -> Result<bool, ApiError> {
    Ok(reports::table
        .filter(reports::device_id.eq(device))
        .filter(reports::release_id.eq(release))
        .filter(reports::step.eq("failed").or(reports::step.eq("reverted")))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

pub fn device(conn: &mut AnyConnection, id: &str) -> Result<Device, ApiError> {
    devices::table
        .find(id)
        .select(Device::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("device"))
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
}

pub fn artifact_detail(
    conn: &mut AnyConnection,
    root: &artifact::TrustRoot,
    id: i64,
) -> Result<ArtifactDetail, ApiError> {
    let a = artifact(conn, id)?;
    let envelope = a.envelope.clone();
    // Stored only after verification; verified again here so that what is shown is signed.
    let v = root
        .verify_manifest(&envelope)
        .map_err(|e| ApiError::Internal(format!("stored envelope: {e}")))?;
    let m = &v.manifest;
    let running_on: Vec<String> = if a.kind == "firmware" {
        devices::table
            .filter(devices::firmware_version.eq(&a.version))
            .select(devices::id)
            .load(conn)?
    } else {
        devices::table
            .filter(devices::model_version.eq(&a.version))
            .select(devices::id)
            .load(conn)?
    };
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
        artifact: a,
    })
}
