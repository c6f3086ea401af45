//! A rollout as the operator API shows it: its spec, a view per stage with the engine's gate
//! checks, its devices and its events. Clients render these; they decide nothing.

use super::decide::{self, DeviceResult, Spec, Stage, StageFigures};
use super::error::Error;
use super::gates::{self, GateCheck};
use super::records::{self, DeviceRow, Event};
use super::request::Selector;
use super::states::{DeviceState, RolloutState};
use crate::db::AnyConnection;
use crate::schema::rollouts;
use crate::store;
use diesel::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub artifact: ArtifactRef,
    pub selector: Selector,
    pub spec: Spec,
    pub state: RolloutState,
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
    /// Each gate as the engine checks it, for a stage that has started (empty before).
    pub gates: Vec<GateCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub device_id: String,
    pub stage: i32,
    pub state: DeviceState,
    pub previous_version: Option<String>,
    pub accuracy_bp: Option<i32>,
    pub p99_us: Option<i64>,
    /// Bytes of the release the server sent this device (chunks and ranges, plain or a
    /// stream; through a gateway, what the gateway fetched under its credential).
    pub bytes_sent: i64,
}

fn stage_view(
    spec: &Spec,
    r_stage: i32,
    index: usize,
    size: Stage,
    all: &[DeviceRow],
) -> StageView {
    let of: Vec<&DeviceRow> = all.iter().filter(|row| row.stage == index as i32).collect();
    let started: Vec<(String, DeviceResult)> = of
        .iter()
        .filter(|row| row.state != DeviceState::Planned && row.state != DeviceState::Cancelled)
        .map(|row| (row.device_id.clone(), row.result()))
        .collect();
    // The gates see what the engine saw: every offered device, a cancelled one as the
    // pending device it was when the rollout stopped.
    let judged: Vec<(String, DeviceResult)> = of
        .iter()
        .filter(|row| row.state != DeviceState::Planned)
        .map(|row| (row.device_id.clone(), row.result()))
        .collect();
    StageView {
        index: index as i32,
        size,
        planned: of.len() as u32,
        figures: decide::figures(&started),
        gates: if index as i32 <= r_stage {
            gates::check(&spec.gates, &judged)
        } else {
            Vec::new()
        },
    }
}

pub fn view(conn: &mut AnyConnection, id: i64, with_devices: bool) -> Result<RolloutView, Error> {
    let r = records::get(conn, id)?;
    let spec = r.spec()?;
    let art = store::artifact(conn, r.artifact_id)?.ok_or(Error::NotFound("artifact"))?;
    let all = records::devices(conn, id)?;
    let stages = spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, size)| stage_view(&spec, r.stage, i, *size, &all))
        .collect();
    let events = records::events(conn, id)?;
    let selector = serde_json::from_str(&r.selector).map_err(|cause| Error::Corrupt {
        rollout: id,
        what: "selector",
        cause,
    })?;
    Ok(RolloutView {
        id,
        artifact: ArtifactRef {
            id: art.id,
            kind: art.kind,
            name: art.name,
            version: art.version,
            bad_reason: art.bad_reason,
        },
        selector,
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
                    bytes_sent: row.bytes_sent,
                })
                .collect()
        } else {
            Vec::new()
        },
        events,
    })
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<RolloutView>, Error> {
    let ids: Vec<i64> = rollouts::table
        .order(rollouts::id.desc())
        .select(rollouts::id)
        .load(conn)?;
    ids.into_iter().map(|id| view(conn, id, false)).collect()
}
