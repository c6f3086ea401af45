//! The rows a rollout is stored in (the rollout, its devices, its events) and their reads.

use super::decide::{DeviceResult, Progress, Spec};
use super::error::Error;
use super::states::{DeviceState, RolloutState};
use crate::db::AnyConnection;
use crate::schema::{rollout_devices, rollout_events, rollouts};
use crate::store::now_ms;
use diesel::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollouts)]
pub struct Rollout {
    pub id: i64,
    pub artifact_id: i64,
    pub selector: String,
    pub spec: String,
    #[diesel(deserialize_as = String)]
    pub state: RolloutState,
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
    pub fn spec(&self) -> Result<Spec, Error> {
        serde_json::from_str(&self.spec).map_err(|cause| Error::Corrupt {
            rollout: self.id,
            what: "spec",
            cause,
        })
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

/// A device of a rollout: its stage, state, what it ran before, and its figures for the release.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollout_devices)]
pub struct DeviceRow {
    pub rollout_id: i64,
    pub device_id: String,
    pub stage: i32,
    #[diesel(deserialize_as = String)]
    pub state: DeviceState,
    pub previous_version: Option<String>,
    pub previous_accuracy_bp: Option<i32>,
    pub accuracy_bp: Option<i32>,
    pub p99_us: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Bytes of its release (plain or a stream) the server sent it (`add_bytes_sent`).
    pub bytes_sent: i64,
}

impl DeviceRow {
    /// What the gates see of this device.
    pub fn result(&self) -> DeviceResult {
        let progress = match self.state {
            // Never finished: a cancelled device is the pending one it was at the halt.
            DeviceState::Planned | DeviceState::Offered | DeviceState::Cancelled => {
                Progress::Pending
            }
            DeviceState::Failed => Progress::Failed,
            DeviceState::Confirmed
            | DeviceState::Reverting
            | DeviceState::Reverted
            | DeviceState::Stranded => Progress::Confirmed,
        };
        DeviceResult {
            progress,
            accuracy_bp: self.accuracy_bp.map(|a| a as u16),
            p99_us: self.p99_us.map(|p| p as u32),
            replaced_accuracy_bp: self.previous_accuracy_bp.map(|a| a as u16),
        }
    }
}

pub fn event(
    conn: &mut AnyConnection,
    rollout: i64,
    stage: i32,
    kind: &str,
    detail: &str,
) -> QueryResult<()> {
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

pub fn events(conn: &mut AnyConnection, rollout: i64) -> QueryResult<Vec<Event>> {
    rollout_events::table
        .filter(rollout_events::rollout_id.eq(rollout))
        .order(rollout_events::id)
        .select(Event::as_select())
        .load(conn)
}

pub fn get(conn: &mut AnyConnection, id: i64) -> Result<Rollout, Error> {
    rollouts::table
        .find(id)
        .select(Rollout::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("rollout"))
}

/// Ids of the rollouts the engine drives.
pub fn running(conn: &mut AnyConnection) -> QueryResult<Vec<i64>> {
    rollouts::table
        .filter(rollouts::state.eq(RolloutState::Running.as_str()))
        .order(rollouts::id)
        .select(rollouts::id)
        .load(conn)
}

/// Every device of a rollout, by stage then id.
pub fn devices(conn: &mut AnyConnection, rollout: i64) -> QueryResult<Vec<DeviceRow>> {
    rollout_devices::table
        .filter(rollout_devices::rollout_id.eq(rollout))
        .order((rollout_devices::stage, rollout_devices::device_id))
        .select(DeviceRow::as_select())
        .load(conn)
}

/// Counts `n` bytes of release `release` sent to `device` (a chunk or a range, plain or a
/// stream), on its row of the newest rollout of that release it is in; a release assigned
/// outside a rollout is counted nowhere. One statement, no transaction.
pub fn add_bytes_sent(
    conn: &mut AnyConnection,
    device: &str,
    release: i64,
    n: u64,
) -> QueryResult<()> {
    if n == 0 {
        return Ok(());
    }
    let rollout: Option<i64> = rollout_devices::table
        .inner_join(rollouts::table.on(rollouts::id.eq(rollout_devices::rollout_id)))
        .filter(rollouts::artifact_id.eq(release))
        .filter(rollout_devices::device_id.eq(device))
        .order(rollouts::id.desc())
        .select(rollouts::id)
        .first(conn)
        .optional()?;
    if let Some(rollout) = rollout {
        diesel::update(rollout_devices::table.find((rollout, device)))
            .set(rollout_devices::bytes_sent.eq(rollout_devices::bytes_sent + n as i64))
            .execute(conn)?;
    }
    Ok(())
}

/// Wakes the long-poll check-ins of a rollout's devices, after a change to it is committed
/// (each decides its command again; those without a new one go on waiting).
pub fn wake_devices(
    conn: &mut AnyConnection,
    waiters: &crate::waiters::Waiters,
    rollout: i64,
) -> QueryResult<()> {
    if waiters.waiting() == 0 {
        return Ok(());
    }
    let ids: Vec<String> = rollout_devices::table
        .filter(rollout_devices::rollout_id.eq(rollout))
        .select(rollout_devices::device_id)
        .load(conn)?;
    waiters.wake(ids.iter().map(String::as_str));
    Ok(())
}

/// Moves a device to `to` if it is in a state `to` may be reached from; returns whether it
/// moved. `finished` also stamps when it finished.
pub fn set_device_state(
    conn: &mut AnyConnection,
    rollout: i64,
    device: &str,
    to: DeviceState,
    finished: bool,
) -> QueryResult<bool> {
    let target = rollout_devices::table
        .find((rollout, device))
        .filter(rollout_devices::state.eq_any(to.sources()));
    let n = if finished {
        diesel::update(target)
            .set((
                rollout_devices::state.eq(to.as_str()),
                rollout_devices::finished_ms.eq(now_ms()),
            ))
            .execute(conn)?
    } else {
        diesel::update(target)
            .set(rollout_devices::state.eq(to.as_str()))
            .execute(conn)?
    };
    Ok(n == 1)
}

/// Moves the rollout to `to` if it is in a state `to` may be reached from (another process may
/// have moved it first); returns whether it moved.
pub fn set_rollout_state(
    conn: &mut AnyConnection,
    rollout: i64,
    to: RolloutState,
) -> QueryResult<bool> {
    let n = diesel::update(
        rollouts::table
            .find(rollout)
            .filter(rollouts::state.eq_any(to.sources())),
    )
    .set((
        rollouts::state.eq(to.as_str()),
        rollouts::updated_ms.eq(now_ms()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}
