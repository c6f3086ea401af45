//! The device side of rollouts: what a device is told at check-in (go back from a bad release,
//! or take its assignment), and what its reports change in the rollout that offered it one.

use super::error::Error;
use super::lifecycle::send_back;
use super::records::{self, DeviceRow, event};
use super::states::{DeviceState, RolloutState};
use crate::db::AnyConnection;
use crate::schema::{rollout_devices, rollouts};
use crate::store::{self, Artifact};
use crate::streams::{self, Stream};
use artifact::ComponentKind;
use diesel::prelude::*;

/// What the server tells a device at check-in.
#[derive(Debug, Clone)]
pub enum DeviceCommand {
    /// Take this release; with the stream to fetch it as, for a device that decodes streams
    /// (`streams::offer`).
    Update(Box<Artifact>, Option<Stream>),
    Revert(ComponentKind),
}

/// The command for a device that checked in with `c`: going back from a bad release first,
/// then its assignment while it does not run it and has not given up on it.
pub fn command_for(
    conn: &mut AnyConnection,
    device: &str,
    c: &protocol::CheckIn<'_>,
) -> Result<Option<DeviceCommand>, Error> {
    let reverting: Vec<i64> = rollout_devices::table
        .filter(rollout_devices::device_id.eq(device))
        .filter(rollout_devices::state.eq(DeviceState::Reverting.as_str()))
        .select(rollout_devices::rollout_id)
        .load(conn)?;
    let running_model = c.model.map(|m| m.version.to_string());
    let running_firmware = c.firmware.version.to_string();
    for rollout in reverting {
        let art_id = records::get(conn, rollout)?.artifact_id;
        let art = store::artifact(conn, art_id)?.ok_or(Error::NotFound("artifact"))?;
        let model = art.component() != ComponentKind::Firmware;
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
    let running = match a.component() {
        ComponentKind::Firmware => Some(running_firmware),
        _ => running_model,
    };
    let in_progress = c.update.is_some_and(|u| u.release == a.id as u64);
    let wanted = running.as_deref() != Some(a.version.as_str()) || in_progress;
    if !wanted || store::gave_up(conn, device, a.id)? {
        return Ok(None);
    }
    let stream = streams::offer(conn, &a, c)?;
    Ok(Some(DeviceCommand::Update(Box::new(a), stream)))
}

fn mark_reverted(conn: &mut AnyConnection, rollout: i64, device: &str) -> QueryResult<()> {
    if records::set_device_state(conn, rollout, device, DeviceState::Reverted, true)? {
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
pub fn on_report(conn: &mut AnyConnection, r: &protocol::Report<'_>) -> Result<(), Error> {
    use protocol::{RevertReason, Step};
    if let Step::Reverted(RevertReason::Requested) = r.step {
        let rollouts_back: Vec<i64> = rollout_devices::table
            .filter(rollout_devices::device_id.eq(r.device_id))
            .filter(rollout_devices::state.eq(DeviceState::Reverting.as_str()))
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
            .select(DeviceRow::as_select())
            .first(conn)
            .optional()?
        else {
            continue;
        };
        match r.step {
            Step::Validated(f) => {
                diesel::update(rollout_devices::table.find((rollout, r.device_id)))
                    .set((
                        rollout_devices::accuracy_bp.eq(Some(i32::from(f.accuracy_bp))),
                        rollout_devices::p99_us.eq(Some(i64::from(f.p99_us))),
                    ))
                    .execute(conn)?;
            }
            Step::Confirmed => {
                let confirmed = records::set_device_state(
                    conn,
                    rollout,
                    r.device_id,
                    DeviceState::Confirmed,
                    true,
                )?;
                // Confirmed after a halt: it must go back too.
                if confirmed && rollout_state == RolloutState::Halted.as_str() {
                    let art = store::artifact(conn, r.release as i64)?
                        .ok_or(Error::NotFound("artifact"))?;
                    let row = DeviceRow {
                        state: DeviceState::Confirmed,
                        ..row
                    };
                    send_back(conn, &art, &row)?;
                }
            }
            Step::Failed(_) | Step::Reverted(_) => {
                let failed = records::set_device_state(
                    conn,
                    rollout,
                    r.device_id,
                    DeviceState::Failed,
                    true,
                )?;
                if !failed {
                    continue;
                }
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
