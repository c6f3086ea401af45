//! Rollouts in the database: creation with the whole plan, stage starts, what each device is
//! told at check-in, what its reports change, halts with reverts, and the operator's pause,
//! resume, abort and rollback. Every change is one transaction, so a crash leaves a rollout
//! where it was.

use super::decide::{self, DeviceResult, Progress, Spec, Stage, StageFigures};
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::{artifacts, assignments, devices, rollout_devices, rollout_events, rollouts};
use crate::store::{self, Artifact, Device, now_ms};
use artifact::ComponentKind;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

/// Rollout states. `running` and `paused` are active; the others are final.
pub const RUNNING: &str = "running";
pub const PAUSED: &str = "paused";
pub const COMPLETED: &str = "completed";
pub const HALTED: &str = "halted";
pub const ABORTED: &str = "aborted";

/// Device states within a rollout.
mod dev {
    pub const PLANNED: &str = "planned";
    pub const OFFERED: &str = "offered";
    pub const CONFIRMED: &str = "confirmed";
    pub const FAILED: &str = "failed";
    pub const REVERTING: &str = "reverting";
    pub const REVERTED: &str = "reverted";
    /// Halted or aborted before this device finished; it stays on what it runs.
    pub const CANCELLED: &str = "cancelled";
    /// Took a firmware that must go back, and no known good release is stored to go back to.
    pub const STRANDED: &str = "stranded";
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollouts)]
pub struct Rollout {
    pub id: i64,
    pub artifact_id: i64,
    pub selector: String,
    pub spec: String,
    pub state: String,
    pub stage: i32,
    pub stage_started_ms: i64,
    pub halted_gate: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: i64,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Rollout {
    pub fn spec(&self) -> Result<Spec, ApiError> {
        serde_json::from_str(&self.spec).map_err(|e| ApiError::Internal(format!("spec: {e}")))
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = rollout_events)]
pub struct Event {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub rollout_id: i64,
    pub at_ms: i64,
    pub stage: i32,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollout_devices)]
struct Row {
    rollout_id: i64,
    device_id: String,
    stage: i32,
    state: String,
    previous_version: Option<String>,
    previous_accuracy_bp: Option<i32>,
    accuracy_bp: Option<i32>,
    p99_us: Option<i64>,
    finished_ms: Option<i64>,
}

impl Row {
    fn result(&self) -> DeviceResult {
        let progress = match self.state.as_str() {
            dev::OFFERED => Progress::Pending,
            dev::FAILED => Progress::Failed,
            _ => Progress::Confirmed,
        };
        DeviceResult {
            progress,
            accuracy_bp: self.accuracy_bp.map(|a| a as u16),
            p99_us: self.p99_us.map(|p| p as u32),
            replaced_accuracy_bp: self.previous_accuracy_bp.map(|a| a as u16),
        }
    }
}

/// Which devices a rollout takes: all of these tags, and the board if given (always one of
/// the release's boards).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub board: Option<String>,
}

impl Selector {
    fn matches(&self, d: &Device, boards: &[&str]) -> bool {
        let tags: Vec<&str> = d.tags.split(',').filter(|t| !t.is_empty()).collect();
        boards.contains(&d.board.as_str())
            && self.board.as_ref().is_none_or(|b| *b == d.board)
            && self.tags.iter().all(|t| tags.contains(&t.as_str()))
    }
}

fn default_latency_ms() -> f64 {
    10.0
}

/// A rollout as an operator asks for it (JSON), in human units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    pub artifact_id: i64,
    #[serde(default)]
    pub selector: Selector,
    /// Cumulative stage sizes: `"5%"` of the selected devices, or a count `"10"`.
    pub stages: Vec<String>,
    #[serde(default)]
    pub soak_seconds: f64,
    #[serde(default)]
    pub min_reports: Option<u32>,
    /// Share of a stage's devices that may fail, 0..=1.
    #[serde(default)]
    pub max_failure_rate: f64,
    /// 0..=1.
    #[serde(default)]
    pub min_accuracy: f64,
    #[serde(default = "default_latency_ms")]
    pub max_latency_ms: f64,
    /// 0..=1.
    #[serde(default)]
    pub max_accuracy_drop: Option<f64>,
}

fn invalid(msg: String) -> ApiError {
    ApiError::Invalid("invalid_rollout", msg)
}

/// Parses `"5%"` or `"10"`.
pub fn parse_stage(s: &str) -> Result<Stage, ApiError> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        match p.trim().parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Stage::Percent(p)),
            _ => Err(invalid(format!("stage {s:?}: a percentage is 1%..100%"))),
        }
    } else {
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Stage::Count(n)),
            _ => Err(invalid(format!("stage {s:?}: give N% or a device count"))),
        }
    }
}

fn fraction_bp(name: &str, f: f64) -> Result<u16, ApiError> {
    if (0.0..=1.0).contains(&f) {
        Ok((f * 10_000.0).round() as u16)
    } else {
        Err(invalid(format!("{name} {f}: a fraction between 0 and 1")))
    }
}

impl NewRollout {
    pub fn spec(&self) -> Result<Spec, ApiError> {
        if self.stages.is_empty() {
            return Err(invalid("at least one stage".into()));
        }
        if !(self.soak_seconds >= 0.0 && self.soak_seconds < 1e9) {
            return Err(invalid(format!("soak {}", self.soak_seconds)));
        }
        if !(self.max_latency_ms > 0.0 && self.max_latency_ms < 1e6) {
            return Err(invalid(format!("max latency {} ms", self.max_latency_ms)));
        }
        Ok(Spec {
            stages: self
                .stages
                .iter()
                .map(|s| parse_stage(s))
                .collect::<Result<_, _>>()?,
            soak_ms: (self.soak_seconds * 1000.0) as u64,
            gates: decide::Gates {
                min_reports: self.min_reports.unwrap_or(1).max(1),
                max_failure_rate_bp: fraction_bp("max failure rate", self.max_failure_rate)?,
                min_accuracy_bp: fraction_bp("min accuracy", self.min_accuracy)?,
                max_p99_latency_us: (self.max_latency_ms * 1000.0) as u32,
                max_accuracy_drop_bp: self
                    .max_accuracy_drop
                    .map(|d| fraction_bp("max accuracy drop", d))
                    .transpose()?,
            },
        })
    }
}

fn event(
    conn: &mut AnyConnection,
    rollout: i64,
    stage: i32,
    kind: &str,
    detail: &str,
) -> Result<(), ApiError> {
    diesel::insert_into(rollout_events::table)
        .values((
            rollout_events::rollout_id.eq(rollout),
            rollout_events::at_ms.eq(now_ms()),
            rollout_events::stage.eq(stage),
            rollout_events::kind.eq(kind),
            rollout_events::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut AnyConnection, id: i64) -> Result<Rollout, ApiError> {
    rollouts::table
        .find(id)
        .select(Rollout::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("rollout"))
}

/// Ids of the rollouts the engine drives.
pub fn running(conn: &mut AnyConnection) -> Result<Vec<i64>, ApiError> {
    Ok(rollouts::table
        .filter(rollouts::state.eq(RUNNING))
        .order(rollouts::id)
        .select(rollouts::id)
        .load(conn)?)
}

/// Creates a rollout: selects the devices, plans every stage (stored, so a restart continues
/// the same plan) and starts the first. Returns its id.
pub fn create(conn: &mut AnyConnection, new: &NewRollout, by: &str) -> Result<i64, ApiError> {
    let spec = new.spec()?;
    let art = store::artifact(conn, new.artifact_id)?;
    if let Some(reason) = &art.bad_reason {
        return Err(ApiError::Invalid(
            "release_bad",
            format!("release {} is marked bad: {reason}", art.id),
        ));
    }
    let boards: Vec<&str> = art.boards.split(',').collect();
    let selected: Vec<Device> = store::list_devices(conn)?
        .into_iter()
        .filter(|d| new.selector.matches(d, &boards))
        .collect();
    if selected.is_empty() {
        return Err(ApiError::Invalid(
            "empty_selection",
            "no enrolled device matches the selector and the release's boards".into(),
        ));
    }
    let candidates: Vec<decide::Candidate> = selected
        .iter()
        .map(|d| decide::Candidate {
            id: d.id.clone(),
            tags: d.tags.split(',').map(str::to_owned).collect(),
        })
        .collect();
    let plan = decide::plan(&spec.stages, &candidates);
    let now = now_ms();
    crate::db::write_tx(conn, |conn| {
        // One active rollout per device: two would fight over its assignment.
        let ids: Vec<&str> = selected.iter().map(|d| d.id.as_str()).collect();
        let active: Vec<i64> = rollouts::table
            .filter(rollouts::state.eq_any([RUNNING, PAUSED]))
            .select(rollouts::id)
            .load(conn)?;
        let busy: Vec<String> = rollout_devices::table
            .filter(rollout_devices::rollout_id.eq_any(&active))
            .filter(rollout_devices::device_id.eq_any(&ids))
            .select(rollout_devices::device_id)
            .limit(5)
            .load(conn)?;
        if !busy.is_empty() {
            return Err(ApiError::Invalid(
                "devices_busy",
                format!("devices in another active rollout: {}", busy.join(", ")),
            ));
        }
        diesel::insert_into(rollouts::table)
            .values((
                rollouts::artifact_id.eq(art.id),
                rollouts::selector.eq(serde_json::to_string(&new.selector).unwrap_or_default()),
                rollouts::spec.eq(serde_json::to_string(&spec).unwrap_or_default()),
                rollouts::state.eq(RUNNING),
                rollouts::stage.eq(0),
                rollouts::stage_started_ms.eq(now),
                rollouts::created_by.eq(by),
                rollouts::created_ms.eq(now),
                rollouts::updated_ms.eq(now),
            ))
            .execute(conn)?;
        let id: i64 = rollouts::table
            .order(rollouts::id.desc())
            .select(rollouts::id)
            .first(conn)?;
        for (stage, ids) in plan.iter().enumerate() {
            for d in ids {
                diesel::insert_into(rollout_devices::table)
                    .values((
                        rollout_devices::rollout_id.eq(id),
                        rollout_devices::device_id.eq(d),
                        rollout_devices::stage.eq(stage as i32),
                        rollout_devices::state.eq(dev::PLANNED),
                    ))
                    .execute(conn)?;
            }
        }
        let sizes: Vec<String> = plan.iter().map(|s| s.len().to_string()).collect();
        event(
            conn,
            id,
            0,
            "created",
            &format!(
                "{} {} {} to {} devices in stages of {} (by {by})",
                art.kind,
                art.name,
                art.version,
                selected.len(),
                sizes.join(" + ")
            ),
        )?;
        start_stage(conn, id, &art, 0)?;
        Ok(id)
    })
}

/// Offers the release to the devices of `stage`, remembering what each runs now (to judge
/// the accuracy drop and to know where to go back).
fn start_stage(
    conn: &mut AnyConnection,
    rollout: i64,
    art: &Artifact,
    stage: i32,
) -> Result<(), ApiError> {
    let ids: Vec<String> = rollout_devices::table
        .filter(rollout_devices::rollout_id.eq(rollout))
        .filter(rollout_devices::stage.eq(stage))
        .filter(rollout_devices::state.eq(dev::PLANNED))
        .select(rollout_devices::device_id)
        .load(conn)?;
    for id in &ids {
        let d: Device = devices::table
            .find(id)
            .select(Device::as_select())
            .first(conn)?;
        let previous = if art.kind == "firmware" {
            d.firmware_version
        } else {
            d.model_version.clone()
        };
        // The accuracy of the model it runs: its validation when it took that version (the
        // last figures it sent may be of a release it rejected since).
        let accuracy = match &d.model_version {
            Some(v) => store::validated_accuracy(conn, id, v)?,
            None => None,
        }
        .or(d.last_accuracy_bp);
        diesel::update(rollout_devices::table.find((rollout, id)))
            .set((
                rollout_devices::state.eq(dev::OFFERED),
                rollout_devices::previous_version.eq(previous),
                rollout_devices::previous_accuracy_bp.eq(accuracy),
            ))
            .execute(conn)?;
        store::assign(conn, id, art.id)?;
    }
    let now = now_ms();
    diesel::update(rollouts::table.find(rollout))
        .set((
            rollouts::stage.eq(stage),
            rollouts::stage_started_ms.eq(now),
            rollouts::updated_ms.eq(now),
        ))
        .execute(conn)?;
    event(
        conn,
        rollout,
        stage,
        "stage_started",
        &format!("stage {} offered to {} devices", stage + 1, ids.len()),
    )
}

fn rows(conn: &mut AnyConnection, rollout: i64) -> Result<Vec<Row>, ApiError> {
    Ok(rollout_devices::table
        .filter(rollout_devices::rollout_id.eq(rollout))
        .order((rollout_devices::stage, rollout_devices::device_id))
        .select(Row::as_select())
        .load(conn)?)
}

/// The engine's view of a stage: its devices' results, when its last device finished, and
/// the devices of the next stage.
#[derive(Debug)]
pub struct StageState {
    pub results: Vec<(String, DeviceResult)>,
    pub finished_ms: Option<u64>,
    pub next: Option<Vec<String>>,
}

pub fn stage_state(
    conn: &mut AnyConnection,
    r: &Rollout,
    spec: &Spec,
) -> Result<StageState, ApiError> {
    let all = rows(conn, r.id)?;
    let current: Vec<&Row> = all.iter().filter(|row| row.stage == r.stage).collect();
    let done = current.iter().all(|row| row.state != dev::OFFERED);
    // An empty stage is finished when it starts.
    let finished_ms = done.then(|| {
        current
            .iter()
            .filter_map(|row| row.finished_ms)
            .max()
            .unwrap_or(r.stage_started_ms) as u64
    });
    let next = (spec.stages.len() > r.stage as usize + 1).then(|| {
        all.iter()
            .filter(|row| row.stage == r.stage + 1)
            .map(|row| row.device_id.clone())
            .collect()
    });
    Ok(StageState {
        results: current
            .iter()
            .map(|row| (row.device_id.clone(), row.result()))
            .collect(),
        finished_ms,
        next,
    })
}

/// Moves to the next stage if the rollout is still running at `stage` (another server
/// process may have moved it already).
pub fn advance(conn: &mut AnyConnection, rollout: i64, stage: i32) -> Result<bool, ApiError> {
    crate::db::write_tx(conn, |conn| {
        let r = get(conn, rollout)?;
        if r.state != RUNNING || r.stage != stage {
            return Ok(false);
        }
        let art = store::artifact(conn, r.artifact_id)?;
        event(
            conn,
            rollout,
            stage,
            "stage_passed",
            &format!("stage {} passed its gates", stage + 1),
        )?;
        start_stage(conn, rollout, &art, stage + 1)?;
        Ok(true)
    })
}

pub fn complete(conn: &mut AnyConnection, rollout: i64, stage: i32) -> Result<bool, ApiError> {
    crate::db::write_tx(conn, |conn| {
        let n = diesel::update(
            rollouts::table
                .find(rollout)
                .filter(rollouts::state.eq(RUNNING))
                .filter(rollouts::stage.eq(stage)),
        )
        .set((
            rollouts::state.eq(COMPLETED),
            rollouts::updated_ms.eq(now_ms()),
        ))
        .execute(conn)?;
        if n == 1 {
            event(
                conn,
                rollout,
                stage,
                "completed",
                "every stage passed its gates",
            )?;
        }
        Ok(n == 1)
    })
}

/// Stops a rollout because a gate failed (or an operator rolled it back): the release is marked
/// bad and offered to no one; devices that took it are told to go back; devices that had not
/// finished keep what they run.
pub fn halt(
    conn: &mut AnyConnection,
    rollout: i64,
    gate: &str,
    evidence: &str,
) -> Result<bool, ApiError> {
    crate::db::write_tx(conn, |conn| {
        let r = get(conn, rollout)?;
        let n = diesel::update(
            rollouts::table
                .find(rollout)
                .filter(rollouts::state.eq_any([RUNNING, PAUSED])),
        )
        .set((
            rollouts::state.eq(HALTED),
            rollouts::halted_gate.eq(gate),
            rollouts::updated_ms.eq(now_ms()),
        ))
        .execute(conn)?;
        if n == 0 {
            return Ok(false);
        }
        let art = store::artifact(conn, r.artifact_id)?;
        diesel::update(artifacts::table.find(art.id))
            .set(artifacts::bad_reason.eq(format!("rollout {rollout}: {gate}: {evidence}")))
            .execute(conn)?;
        diesel::delete(assignments::table.filter(assignments::artifact_id.eq(art.id)))
            .execute(conn)?;
        diesel::update(
            rollout_devices::table
                .filter(rollout_devices::rollout_id.eq(rollout))
                .filter(rollout_devices::state.eq_any([dev::PLANNED, dev::OFFERED])),
        )
        .set(rollout_devices::state.eq(dev::CANCELLED))
        .execute(conn)?;
        let took: Vec<Row> = rows(conn, rollout)?
            .into_iter()
            .filter(|row| row.state == dev::CONFIRMED)
            .collect();
        let mut stranded = Vec::new();
        for row in &took {
            let state = send_back(conn, &art, row)?;
            if state == dev::STRANDED {
                stranded.push(row.device_id.as_str());
            }
        }
        event(
            conn,
            rollout,
            r.stage,
            "halted",
            &format!("gate {gate} failed: {evidence}"),
        )?;
        if !took.is_empty() {
            event(
                conn,
                rollout,
                r.stage,
                "revert_sent",
                &format!(
                    "{} devices told to go back: {}",
                    took.len(),
                    took.iter()
                        .map(|r| r.device_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )?;
        }
        if !stranded.is_empty() {
            event(
                conn,
                rollout,
                r.stage,
                "no_known_good",
                &format!(
                    "no good firmware release of the previous version with security counter >= {} stored (sign it again with that counter and upload it) for: {}",
                    art.security_counter,
                    stranded.join(", ")
                ),
            )?;
        }
        Ok(true)
    })
}

/// Marks a device that took a bad release for going back. Models go back to the previous slot
/// (the device keeps it); firmware goes back by an update to the last known good release.
fn send_back(
    conn: &mut AnyConnection,
    art: &Artifact,
    row: &Row,
) -> Result<&'static str, ApiError> {
    let state = if art.kind == "firmware" {
        let good: Option<i64> = artifacts::table
            .filter(artifacts::kind.eq("firmware"))
            .filter(artifacts::name.eq(&art.name))
            .filter(
                artifacts::version
                    .nullable()
                    .eq(row.previous_version.as_deref()),
            )
            .filter(artifacts::bad_reason.is_null())
            // The bootloader refuses a counter below the one it has seen: only a release of
            // the good version signed again with at least the bad one's counter can go back.
            .filter(artifacts::security_counter.ge(art.security_counter))
            .order(artifacts::id.desc())
            .select(artifacts::id)
            .first(conn)
            .optional()?;
        match good {
            Some(id) => {
                store::assign(conn, &row.device_id, id)?;
                dev::REVERTING
            }
            None => dev::STRANDED,
        }
    } else {
        dev::REVERTING
    };
    diesel::update(rollout_devices::table.find((row.rollout_id, &row.device_id)))
        .set(rollout_devices::state.eq(state))
        .execute(conn)?;
    Ok(state)
}

/// Operator actions: pause, resume, abort (stop, nothing sent back), rollback (stop and send
/// back, as a failed gate does).
pub fn operator_action(
    conn: &mut AnyConnection,
    rollout: i64,
    action: &str,
    by: &str,
) -> Result<(), ApiError> {
    let r = get(conn, rollout)?;
    let from_to = match action {
        "pause" => Some((RUNNING, PAUSED)),
        "resume" => Some((PAUSED, RUNNING)),
        "abort" | "rollback" => None,
        _ => return Err(ApiError::NotFound("action")),
    };
    let conflict = || {
        ApiError::Invalid(
            "invalid_state",
            format!("rollout {rollout} is {}: cannot {action}", r.state),
        )
    };
    if let Some((from, to)) = from_to {
        return crate::db::write_tx(conn, |conn| {
            let n = diesel::update(
                rollouts::table
                    .find(rollout)
                    .filter(rollouts::state.eq(from)),
            )
            .set((rollouts::state.eq(to), rollouts::updated_ms.eq(now_ms())))
            .execute(conn)?;
            if n == 0 {
                return Err(conflict());
            }
            event(
                conn,
                rollout,
                r.stage,
                &format!("{action}d"),
                &format!("by {by}"),
            )
        });
    }
    if action == "rollback" {
        return if halt(conn, rollout, "operator", &format!("rolled back by {by}"))? {
            Ok(())
        } else {
            Err(conflict())
        };
    }
    crate::db::write_tx(conn, |conn| {
        let n = diesel::update(
            rollouts::table
                .find(rollout)
                .filter(rollouts::state.eq_any([RUNNING, PAUSED])),
        )
        .set((
            rollouts::state.eq(ABORTED),
            rollouts::updated_ms.eq(now_ms()),
        ))
        .execute(conn)?;
        if n == 0 {
            return Err(conflict());
        }
        diesel::delete(
            assignments::table
                .filter(assignments::artifact_id.eq(r.artifact_id))
                .filter(
                    assignments::device_id.eq_any(
                        rollout_devices::table
                            .filter(rollout_devices::rollout_id.eq(rollout))
                            .filter(rollout_devices::state.eq_any([dev::PLANNED, dev::OFFERED]))
                            .select(rollout_devices::device_id),
                    ),
                ),
        )
        .execute(conn)?;
        diesel::update(
            rollout_devices::table
                .filter(rollout_devices::rollout_id.eq(rollout))
                .filter(rollout_devices::state.eq_any([dev::PLANNED, dev::OFFERED])),
        )
        .set(rollout_devices::state.eq(dev::CANCELLED))
        .execute(conn)?;
        event(conn, rollout, r.stage, "aborted", &format!("by {by}"))
    })
}

/// What the server tells a device at check-in.
#[derive(Debug, Clone)]
pub enum DeviceCommand {
    Update(Artifact),
    Revert(ComponentKind),
}

/// The command for a device that checked in with `c`: going back from a bad release first,
/// then its assignment while it does not run it and has not given up on it.
pub fn command_for(
    conn: &mut AnyConnection,
    device: &str,
    c: &protocol::CheckIn<'_>,
) -> Result<Option<DeviceCommand>, ApiError> {
    let reverting: Vec<i64> = rollout_devices::table
        .filter(rollout_devices::device_id.eq(device))
        .filter(rollout_devices::state.eq(dev::REVERTING))
        .select(rollout_devices::rollout_id)
        .load(conn)?;
    let running_model = c.model.map(|m| m.version.to_string());
    let running_firmware = c.firmware.version.to_string();
    for rollout in reverting {
        let art_id = get(conn, rollout)?.artifact_id;
        let art = store::artifact(conn, art_id)?;
        let model = art.kind != "firmware";
        let runs_bad = if model {
            running_model.as_deref() == Some(art.version.as_str())
        } else {
            running_firmware == art.version
        };
        if !runs_bad {
            // It is back (its report may still be on the way): done.
            mark_reverted(conn, rollout, device)?;
        } else if model {
            return Ok(Some(DeviceCommand::Revert(ComponentKind::Model)));
        }
        // Firmware goes back through its assignment to the last good release, below.
    }
    let Some(a) = store::assignment(conn, device)? else {
        return Ok(None);
    };
    if a.bad_reason.is_some() {
        return Ok(None);
    }
    let running = if a.kind == "firmware" {
        Some(running_firmware)
    } else {
        running_model
    };
    let in_progress = c.update.is_some_and(|u| u.release == a.id as u64);
    let wanted = running.as_deref() != Some(a.version.as_str()) || in_progress;
    Ok((wanted && !store::gave_up(conn, device, a.id)?).then_some(DeviceCommand::Update(a)))
}

fn mark_reverted(conn: &mut AnyConnection, rollout: i64, device: &str) -> Result<(), ApiError> {
    let n = diesel::update(
        rollout_devices::table
            .find((rollout, device))
            .filter(rollout_devices::state.eq(dev::REVERTING)),
    )
    .set((
        rollout_devices::state.eq(dev::REVERTED),
        rollout_devices::finished_ms.eq(now_ms()),
    ))
    .execute(conn)?;
    if n == 1 {
        let stage: i32 = rollout_devices::table
            .find((rollout, device))
            .select(rollout_devices::stage)
            .first(conn)?;
        event(
            conn,
            rollout,
            stage,
            "device_reverted",
            &format!("{device} is back on its previous version"),
        )?;
    }
    Ok(())
}

/// What a device's report changes in the rollout that offered it the release.
pub fn on_report(conn: &mut AnyConnection, r: &protocol::Report<'_>) -> Result<(), ApiError> {
    use protocol::{RevertReason, Step};
    if let Step::Reverted(RevertReason::Requested) = r.step {
        let rollouts_back: Vec<i64> = rollout_devices::table
            .filter(rollout_devices::device_id.eq(r.device_id))
            .filter(rollout_devices::state.eq(dev::REVERTING))
            .select(rollout_devices::rollout_id)
            .load(conn)?;
        for rollout in rollouts_back {
            mark_reverted(conn, rollout, r.device_id)?;
        }
        return Ok(());
    }
    let of_release: Vec<(i64, String)> = rollouts::table
        .filter(rollouts::artifact_id.eq(r.release as i64))
        .select((rollouts::id, rollouts::state))
        .load(conn)?;
    for (rollout, rollout_state) in of_release {
        let Some(row) = rollout_devices::table
            .find((rollout, r.device_id))
            .select(Row::as_select())
            .first(conn)
            .optional()?
        else {
            continue;
        };
        let target = rollout_devices::table.find((rollout, r.device_id));
        match r.step {
            Step::Validated(f) => {
                diesel::update(target)
                    .set((
                        rollout_devices::accuracy_bp.eq(Some(i32::from(f.accuracy_bp))),
                        rollout_devices::p99_us.eq(Some(i64::from(f.p99_us))),
                    ))
                    .execute(conn)?;
            }
            Step::Confirmed if row.state == dev::OFFERED || row.state == dev::CANCELLED => {
                // Confirmed after a halt: it must go back too.
                let halted = rollout_state == HALTED;
                diesel::update(target)
                    .set((
                        rollout_devices::state.eq(dev::CONFIRMED),
                        rollout_devices::finished_ms.eq(now_ms()),
                    ))
                    .execute(conn)?;
                if halted {
                    let art = store::artifact(conn, r.release as i64)?;
                    let row = Row {
                        state: dev::CONFIRMED.into(),
                        ..row
                    };
                    send_back(conn, &art, &row)?;
                }
            }
            Step::Failed(_) | Step::Reverted(_) if row.state == dev::OFFERED => {
                diesel::update(target)
                    .set((
                        rollout_devices::state.eq(dev::FAILED),
                        rollout_devices::finished_ms.eq(now_ms()),
                    ))
                    .execute(conn)?;
                let what = match r.step {
                    Step::Failed(f) => format!("failed: {f:?}"),
                    Step::Reverted(why) => format!("rejected it: {why:?}"),
                    _ => String::new(),
                };
                let figures = match (row.accuracy_bp, row.p99_us) {
                    (Some(a), Some(p)) => format!(" (accuracy {a} bp, p99 {p} us)"),
                    _ => String::new(),
                };
                event(
                    conn,
                    rollout,
                    row.stage,
                    "device_failed",
                    &format!("{} {what}{figures}", r.device_id),
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A rollout as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub artifact: ArtifactRef,
    pub selector: Selector,
    pub spec: Spec,
    pub state: String,
    /// The current stage, from 0.
    pub stage: i32,
    pub halted_gate: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub stages: Vec<StageView>,
    pub devices: Vec<DeviceView>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRef {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub version: String,
    pub bad_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    pub index: i32,
    pub size: Stage,
    /// Devices the stage adds.
    pub planned: u32,
    pub figures: StageFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub device_id: String,
    pub stage: i32,
    pub state: String,
    pub previous_version: Option<String>,
    pub accuracy_bp: Option<i32>,
    pub p99_us: Option<i64>,
}

pub fn view(
    conn: &mut AnyConnection,
    id: i64,
    with_devices: bool,
) -> Result<RolloutView, ApiError> {
    let r = get(conn, id)?;
    let spec = r.spec()?;
    let art = store::artifact(conn, r.artifact_id)?;
    let all = rows(conn, id)?;
    let stages = spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let of: Vec<&Row> = all.iter().filter(|row| row.stage == i as i32).collect();
            let started: Vec<(String, DeviceResult)> = of
                .iter()
                .filter(|row| row.state != dev::PLANNED && row.state != dev::CANCELLED)
                .map(|row| (row.device_id.clone(), row.result()))
                .collect();
            StageView {
                index: i as i32,
                size: *size,
                planned: of.len() as u32,
                figures: decide::figures(&started),
            }
        })
        .collect();
    let events = rollout_events::table
        .filter(rollout_events::rollout_id.eq(id))
        .order(rollout_events::id)
        .select(Event::as_select())
        .load(conn)?;
    Ok(RolloutView {
        id,
        artifact: ArtifactRef {
            id: art.id,
            kind: art.kind,
            name: art.name,
            version: art.version,
            bad_reason: art.bad_reason,
        },
        selector: serde_json::from_str(&r.selector).unwrap_or_default(),
        spec,
        state: r.state,
        stage: r.stage,
        halted_gate: r.halted_gate,
        created_by: r.created_by,
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        stages,
        devices: if with_devices {
            all.into_iter()
                .map(|row| DeviceView {
                    device_id: row.device_id,
                    stage: row.stage,
                    state: row.state,
                    previous_version: row.previous_version,
                    accuracy_bp: row.accuracy_bp,
                    p99_us: row.p99_us,
                })
                .collect()
        } else {
            Vec::new()
        },
        events,
    })
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<RolloutView>, ApiError> {
    let ids: Vec<i64> = rollouts::table
        .order(rollouts::id.desc())
        .select(rollouts::id)
        .load(conn)?;
    ids.into_iter().map(|id| view(conn, id, false)).collect()
}
