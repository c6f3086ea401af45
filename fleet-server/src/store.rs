//! Queries: devices and their credentials, artifacts (payloads content-addressed on disk),
//! assignments, reports. Database code: it returns diesel's errors, a lookup that finds
//! nothing is `None`, and the API decides what either means to a client.

use crate::db::AnyConnection;
use crate::schema::{artifacts, assignments, devices, reports};
use artifact::ComponentKind;
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
    /// The model-runtime ABI its firmware provides, as its last check-in said (None: unknown,
    /// firmware before protocol revision 1.1 or no check-in yet).
    pub runtime_abi: Option<i32>,
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

impl Artifact {
    /// What the release carries first: firmware or a model.
    pub fn component(&self) -> ComponentKind {
        if self.kind == ComponentKind::Firmware.as_str() {
            ComponentKind::Firmware
        } else {
            ComponentKind::Model
        }
    }
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

/// A new device's credential: 32 random bytes, hex (shown once, stored hashed).
pub fn new_credential() -> std::io::Result<String> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(raw))
}

/// Enrols a device with the hash of its credential; `false` if the id is taken.
pub fn enroll(
    conn: &mut AnyConnection,
    id: &str,
    board: &str,
    tags: &str,
    credential: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(devices::table)
        .values((
            devices::id.eq(id),
            devices::board.eq(board),
            devices::tags.eq(tags),
            devices::credential_sha256.eq(sha256_hex(credential.as_bytes())),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn device_by_hash(conn: &mut AnyConnection, hash: &str) -> QueryResult<Option<Device>> {
    devices::table
        .filter(devices::credential_sha256.eq(hash))
        .select(Device::as_select())
        .first(conn)
        .optional()
}

/// Whether any device is bound to gateway `name` (tagged `gateway:NAME`): the gateways the
/// server knows are those its devices name.
pub fn gateway_enrolled(conn: &mut AnyConnection, name: &str) -> QueryResult<bool> {
    let tag = format!("{}{name}", crate::credentials::GATEWAY_TAG);
    // LIKE narrows (its wildcards in a name only widen it), the exact tag decides.
    let tags: Vec<String> = devices::table
        .filter(devices::tags.like(format!("%{tag}%")))
        .select(devices::tags)
        .load(conn)?;
    // The binding itself is `credentials::bound_gateway`'s rule, compared as DNS names are.
    Ok(tags.iter().any(|t| {
        crate::credentials::bound_gateway(t).is_some_and(|g| g.eq_ignore_ascii_case(name))
    }))
}

pub fn list_devices(conn: &mut AnyConnection) -> QueryResult<Vec<Device>> {
    devices::table
        .order(devices::id)
        .select(Device::as_select())
        .load(conn)
}

/// Where a payload with this digest lives.
pub fn payload_path(data: &Path, sha256: &str) -> PathBuf {
    data.join("artifacts").join(sha256)
}

/// Writes a payload content-addressed under `data` (through a temporary file and a rename, so
/// a crash never leaves a partial payload under its digest); returns its SHA-256.
pub fn write_payload(data: &Path, payload: &[u8]) -> std::io::Result<String> {
    write_addressed(&data.join("artifacts"), payload)
}

/// Writes `bytes` as DIR/{sha256} (through a temporary file and a rename, so a crash never
/// leaves partial content under its digest); returns the digest.
pub fn write_addressed(dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let digest = sha256_hex(bytes);
    let path = dir.join(&digest);
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(digest)
}

/// A verified release as stored: what its manifest says, and its payload's digest and size.
#[derive(Debug, Clone)]
pub struct NewArtifact<'a> {
    pub kind: ComponentKind,
    pub name: &'a str,
    pub version: String,
    pub security_counter: u64,
    pub boards: String,
    pub envelope: Vec<u8>,
    pub payload_sha256: String,
    pub payload_len: usize,
}

/// Stores a release's manifest; returns the stored row (its id from `RETURNING`, so concurrent
/// uploads each get their own).
pub fn insert_artifact(conn: &mut AnyConnection, a: &NewArtifact<'_>) -> QueryResult<Artifact> {
    let id = diesel::insert_into(artifacts::table)
        .values((
            artifacts::kind.eq(a.kind.as_str()),
            artifacts::name.eq(a.name),
            artifacts::version.eq(&a.version),
            artifacts::security_counter.eq(a.security_counter as i64),
            artifacts::boards.eq(&a.boards),
            artifacts::envelope.eq(&a.envelope),
            artifacts::payload_sha256.eq(&a.payload_sha256),
            artifacts::payload_len.eq(a.payload_len as i64),
            artifacts::created_ms.eq(now_ms()),
        ))
        .returning(artifacts::id)
        .get_result::<i64>(conn)?;
    artifacts::table
        .find(id)
        .select(Artifact::as_select())
        .first(conn)
}

pub fn artifact(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Artifact>> {
    artifacts::table
        .find(id)
        .select(Artifact::as_select())
        .first(conn)
        .optional()
}

pub fn list_artifacts(conn: &mut AnyConnection) -> QueryResult<Vec<Artifact>> {
    artifacts::table
        .order(artifacts::id)
        .select(Artifact::as_select())
        .load(conn)
}

/// Assigns an artifact to a device (the rollout engine's unit of work).
pub fn assign(conn: &mut AnyConnection, device: &str, artifact_id: i64) -> QueryResult<()> {
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

pub fn assignment(conn: &mut AnyConnection, device: &str) -> QueryResult<Option<Artifact>> {
    let id: Option<i64> = assignments::table
        .find(device)
        .select(assignments::artifact_id)
        .first(conn)
        .optional()?;
    Ok(match id {
        Some(id) => artifact(conn, id)?,
        None => None,
    })
}

/// Stores a report once; a redelivered (device, seq) is acknowledged and not stored again.
/// Returns whether it was new.
pub fn insert_report(conn: &mut AnyConnection, r: &protocol::Report<'_>) -> QueryResult<bool> {
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

pub fn reports_of(conn: &mut AnyConnection, device: &str) -> QueryResult<Vec<StoredReport>> {
    reports::table
        .filter(reports::device_id.eq(device))
        .order(reports::seq)
        .select(StoredReport::as_select())
        .load(conn)
}

/// The accuracy a device measured when it validated model `version` (its latest such report).
pub fn validated_accuracy(
    conn: &mut AnyConnection,
    device: &str,
    version: &str,
) -> QueryResult<Option<i32>> {
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
pub fn gave_up(conn: &mut AnyConnection, device: &str, release: i64) -> QueryResult<bool> {
    Ok(reports::table
        .filter(reports::device_id.eq(device))
        .filter(reports::release_id.eq(release))
        .filter(reports::step.eq("failed").or(reports::step.eq("reverted")))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

pub fn device(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Device>> {
    devices::table
        .find(id)
        .select(Device::as_select())
        .first(conn)
        .optional()
}

/// The devices that run an artifact's version now.
pub fn running(conn: &mut AnyConnection, a: &Artifact) -> QueryResult<Vec<String>> {
    match a.component() {
        ComponentKind::Firmware => devices::table
            .filter(devices::firmware_version.eq(&a.version))
            .select(devices::id)
            .load(conn),
        _ => devices::table
            .filter(devices::model_version.eq(&a.version))
            .select(devices::id)
            .load(conn),
    }
}
