//! A rollout's life in the database: creation with the whole plan, stage starts, advance,
//! completion, halts that send devices back, and the operator's pause, resume, abort and
//! rollback. Every change is one transaction, so a crash leaves a rollout where it was.

use super::compat::{self, Compatibility};
use super::decide::{self, DeviceResult, Spec};
use super::error::Error;
use super::records::{self, DeviceRow, Rollout, event};
use super::request::NewRollout;
use super::states::{DeviceState, RolloutState};
use crate::db::AnyConnection;
use crate::schema::{artifacts, assignments, devices, rollout_devices, rollouts};
use crate::store::{self, Artifact, Device, now_ms};
use artifact::ComponentKind;
use diesel::prelude::*;

/// What an operator may do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    /// Stop; nothing is sent back.
    Abort,
    /// Stop and send back, as a failed gate does.
    Rollback,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "abort" => Action::Abort,
            "rollback" => Action::Rollback,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Rollback => "rollback",
        }
    }
}

/// Creates a rollout: selects the devices, plans every stage (stored, so a restart continues
/// the same plan) and starts the first. Returns its id and, for a model, how many selected
/// devices cannot run its runtime ABI (they are still offered it: each refuses it before
/// writing, and the gates see those failures).
pub fn create(
    conn: &mut AnyConnection,
    new: &NewRollout,
    by: &str,
) -> Result<(i64, Option<Compatibility>), Error> {
    let spec = new.spec()?;
    let art = store::artifact(conn, new.artifact_id)?.ok_or(Error::NotFound("artifact"))?;
    if let Some(reason) = &art.bad_reason {
        return Err(Error::invalid(
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
        return Err(Error::invalid(
            "empty_selection",
            "no enrolled device matches the selector and the release's boards",
        ));
    }
    let compatibility = compat::required_abi(&art)
        .map_err(|cause| Error::CorruptArtifact {
            artifact: art.id,
            cause,
        })?
        .map(|required| compat::count(required, &selected));
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
            .filter(rollouts::state.eq_any([
                RolloutState::Running.as_str(),
                RolloutState::Paused.as_str(),
            ]))
            .select(rollouts::id)
            .load(conn)?;
        let busy: Vec<String> = rollout_devices::table
            .filter(rollout_devices::rollout_id.eq_any(&active))
            .filter(rollout_devices::device_id.eq_any(&ids))
            .select(rollout_devices::device_id)
            .limit(5)
            .load(conn)?;
        if !busy.is_empty() {
            return Err(Error::invalid(
                "devices_busy",
                format!("devices in another active rollout: {}", busy.join(", ")),
            ));
        }
        let id: i64 = diesel::insert_into(rollouts::table)
            .values((
                rollouts::artifact_id.eq(art.id),
                rollouts::selector.eq(serde_json::to_string(&new.selector).unwrap_or_default()),
                rollouts::spec.eq(serde_json::to_string(&spec).unwrap_or_default()),
                rollouts::state.eq(RolloutState::Running.as_str()),
                rollouts::stage.eq(0),
                rollouts::stage_started_ms.eq(now),
                rollouts::created_by.eq(by),
                rollouts::created_ms.eq(now),
                rollouts::updated_ms.eq(now),
            ))
            .returning(rollouts::id)
            .get_result(conn)?;
        for (stage, ids) in plan.iter().enumerate() {
            for d in ids {
                diesel::insert_into(rollout_devices::table)
                    .values((
                        rollout_devices::rollout_id.eq(id),
                        rollout_devices::device_id.eq(d),
                        rollout_devices::stage.eq(stage as i32),
                        rollout_devices::state.eq(DeviceState::Planned.as_str()),
                    ))
                    .execute(conn)?;
            }
        }
        let sizes: Vec<String> = plan.iter().map(|s| s.len().to_string()).collect();
        let mut created = format!(
            "{} {} {} to {} devices in stages of {} (by {by})",
            art.kind,
            art.name,
            art.version,
            selected.len(),
            sizes.join(" + ")
        );
        if let Some(c) = compatibility {
            created += &format!(
                "; {} cannot run runtime ABI {} (older firmware), {} of unknown ABI",
                c.too_old, c.required_abi, c.unknown
            );
        }
        event(conn, id, 0, "created", &created)?;
        start_stage(conn, id, &art, 0)?;
        Ok((id, compatibility))
    })
}

/// Offers the release to the devices of `stage`, remembering what each runs now (to judge
/// the accuracy drop and to know where to go back).
fn start_stage(
    conn: &mut AnyConnection,
    rollout: i64,
    art: &Artifact,
    stage: i32,
) -> Result<(), Error> {
    let ids: Vec<String> = rollout_devices::table
        .filter(rollout_devices::rollout_id.eq(rollout))
        .filter(rollout_devices::stage.eq(stage))
        .filter(rollout_devices::state.eq(DeviceState::Planned.as_str()))
        .select(rollout_devices::device_id)
        .load(conn)?;
    for id in &ids {
        let d: Device = devices::table
            .find(id)
            .select(Device::as_select())
            .first(conn)?;
        let previous = match art.component() {
            ComponentKind::Firmware => d.firmware_version,
            _ => d.model_version.clone(),
        };
        // The accuracy of the model it runs: its validation when it took that version (the
        // last figures it sent may be of a release it rejected since).
        let accuracy = match &d.model_version {
            Some(v) => store::validated_accuracy(conn, id, v)?,
            None => None,
        }
        .or(d.last_accuracy_bp);
        diesel::update(
            rollout_devices::table
                .find((rollout, id))
                .filter(rollout_devices::state.eq_any(DeviceState::Offered.sources())),
        )
        .set((
            rollout_devices::state.eq(DeviceState::Offered.as_str()),
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
    )?;
    Ok(())
}

/// The engine's view of a stage: its devices' results, when its last device finished, and
/// the devices of the next stage.
#[derive(Debug)]
pub struct StageState {
    pub results: Vec<(String, DeviceResult)>,
    pub finished_ms: Option<u64>,
    pub next: Option<Vec<String>>,
}

pub fn stage_state(conn: &mut AnyConnection, r: &Rollout, spec: &Spec) -> QueryResult<StageState> {
    let all = records::devices(conn, r.id)?;
    let current: Vec<&DeviceRow> = all.iter().filter(|row| row.stage == r.stage).collect();
    let done = current.iter().all(|row| row.state != DeviceState::Offered);
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
pub fn advance(conn: &mut AnyConnection, rollout: i64, stage: i32) -> Result<bool, Error> {
    crate::db::write_tx(conn, |conn| {
        let r = records::get(conn, rollout)?;
        if r.state != RolloutState::Running || r.stage != stage {
            return Ok(false);
        }
        let art = store::artifact(conn, r.artifact_id)?.ok_or(Error::NotFound("artifact"))?;
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

pub fn complete(conn: &mut AnyConnection, rollout: i64, stage: i32) -> QueryResult<bool> {
    crate::db::write_tx(conn, |conn| {
        // One conditional update: still at this stage, and in a state it may complete from.
        let done = diesel::update(
            rollouts::table
                .find(rollout)
                .filter(rollouts::stage.eq(stage))
                .filter(rollouts::state.eq_any(RolloutState::Completed.sources())),
        )
        .set((
            rollouts::state.eq(RolloutState::Completed.as_str()),
            rollouts::updated_ms.eq(now_ms()),
        ))
        .execute(conn)?
            == 1;
        if done {
            event(
                conn,
                rollout,
                stage,
                "completed",
                "every stage passed its gates",
            )?;
        }
        Ok(done)
    })
}

/// The devices of a rollout that had not finished are cancelled: they keep what they run, and
/// the release is no longer assigned to them.
fn cancel_unfinished(conn: &mut AnyConnection, rollout: i64, artifact_id: i64) -> QueryResult<()> {
    let unfinished = DeviceState::Cancelled.sources();
    diesel::delete(
        assignments::table
            .filter(assignments::artifact_id.eq(artifact_id))
            .filter(
                assignments::device_id.eq_any(
                    rollout_devices::table
                        .filter(rollout_devices::rollout_id.eq(rollout))
                        .filter(rollout_devices::state.eq_any(unfinished.clone()))
                        .select(rollout_devices::device_id),
                ),
            ),
    )
    .execute(conn)?;
    diesel::update(
        rollout_devices::table
            .filter(rollout_devices::rollout_id.eq(rollout))
            .filter(rollout_devices::state.eq_any(unfinished)),
    )
    .set(rollout_devices::state.eq(DeviceState::Cancelled.as_str()))
    .execute(conn)?;
    Ok(())
}

/// Stops a rollout because a gate failed (or an operator rolled it back): the release is marked
/// bad and offered to no one; devices that took it are told to go back; devices that had not
/// finished keep what they run.
pub fn halt(
    conn: &mut AnyConnection,
    rollout: i64,
    gate: &str,
    evidence: &str,
) -> Result<bool, Error> {
    crate::db::write_tx(conn, |conn| {
        let r = records::get(conn, rollout)?;
        let n = diesel::update(
            rollouts::table
                .find(rollout)
                .filter(rollouts::state.eq_any(RolloutState::Halted.sources())),
        )
        .set((
            rollouts::state.eq(RolloutState::Halted.as_str()),
            rollouts::halted_gate.eq(gate),
            rollouts::updated_ms.eq(now_ms()),
        ))
        .execute(conn)?;
        if n == 0 {
            return Ok(false);
        }
        let art = store::artifact(conn, r.artifact_id)?.ok_or(Error::NotFound("artifact"))?;
        diesel::update(artifacts::table.find(art.id))
            .set(artifacts::bad_reason.eq(format!("rollout {rollout}: {gate}: {evidence}")))
            .execute(conn)?;
        cancel_unfinished(conn, rollout, art.id)?;
        // Offered to no one: the devices that took it go back through their own assignment.
        diesel::delete(assignments::table.filter(assignments::artifact_id.eq(art.id)))
            .execute(conn)?;
        let took: Vec<DeviceRow> = records::devices(conn, rollout)?
            .into_iter()
            .filter(|row| row.state == DeviceState::Confirmed)
            .collect();
        let mut stranded = Vec::new();
        for row in &took {
            if send_back(conn, &art, row)? == DeviceState::Stranded {
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
pub(super) fn send_back(
    conn: &mut AnyConnection,
    art: &Artifact,
    row: &DeviceRow,
) -> QueryResult<DeviceState> {
    let state = match art.component() {
        ComponentKind::Firmware => {
            let good: Option<i64> = artifacts::table
                .filter(artifacts::kind.eq(ComponentKind::Firmware.as_str()))
                .filter(artifacts::name.eq(&art.name))
                .filter(
                    artifacts::version
                        .nullable()
                        .eq(row.previous_version.as_deref()),
                )
                .filter(artifacts::bad_reason.is_null())
                // The bootloader refuses a counter below the one it has seen: only a release
                // of the good version signed again with at least the bad one's counter can go
                // back.
                .filter(artifacts::security_counter.ge(art.security_counter))
                .order(artifacts::id.desc())
                .select(artifacts::id)
                .first(conn)
                .optional()?;
            match good {
                Some(id) => {
                    store::assign(conn, &row.device_id, id)?;
                    DeviceState::Reverting
                }
                None => DeviceState::Stranded,
            }
        }
        _ => DeviceState::Reverting,
    };
    records::set_device_state(conn, row.rollout_id, &row.device_id, state, false)?;
    Ok(state)
}

/// An operator's action on a rollout.
pub fn operator_action(
    conn: &mut AnyConnection,
    rollout: i64,
    action: Action,
    by: &str,
) -> Result<(), Error> {
    let r = records::get(conn, rollout)?;
    let conflict = || {
        Error::invalid(
            "invalid_state",
            format!(
                "rollout {rollout} is {}: cannot {}",
                r.state,
                action.as_str()
            ),
        )
    };
    let moved = match action {
        Action::Pause | Action::Resume => {
            let (to, kind) = if action == Action::Pause {
                (RolloutState::Paused, "paused")
            } else {
                (RolloutState::Running, "resumed")
            };
            crate::db::write_tx(conn, |conn| {
                let moved = records::set_rollout_state(conn, rollout, to)?;
                if moved {
                    event(conn, rollout, r.stage, kind, &format!("by {by}"))?;
                }
                Ok::<_, Error>(moved)
            })?
        }
        Action::Rollback => halt(conn, rollout, "operator", &format!("rolled back by {by}"))?,
        Action::Abort => crate::db::write_tx(conn, |conn| {
            let moved = records::set_rollout_state(conn, rollout, RolloutState::Aborted)?;
            if moved {
                cancel_unfinished(conn, rollout, r.artifact_id)?;
                event(conn, rollout, r.stage, "aborted", &format!("by {by}"))?;
            }
            Ok::<_, Error>(moved)
        })?,
    };
    if moved { Ok(()) } else { Err(conflict()) }
}
