//! What devices say in check-ins (versions, runtime ABI, slot, last seen, last figures),
//! written behind: kept in memory and written in one transaction every few hundred
//! milliseconds, so that a check-in itself only reads. A crash loses at most one interval of
//! "last seen", which the device's next check-in restores; nothing a rollout decides on lives
//! only here (reports are written before they are acknowledged).

use crate::db::{AnyConnection, DbPool};
use crate::error::ApiError;
use crate::schema::devices;
use crate::store::now_ms;
use diesel::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    firmware_version: String,
    model_version: Option<String>,
    model_slot: Option<i32>,
    last_seen_ms: i64,
    last_accuracy_bp: Option<i32>,
    last_p99_us: Option<i64>,
    runtime_abi: Option<i32>,
}

#[derive(Debug, Default)]
pub struct Checkins {
    pending: Mutex<HashMap<String, Seen>>,
}

impl Checkins {
    /// Notes a check-in (the latest per device wins).
    pub fn record(&self, c: &protocol::CheckIn<'_>) {
        let seen = Seen {
            firmware_version: c.firmware.version.to_string(),
            model_version: c.model.map(|m| m.version.to_string()),
            model_slot: c.model.map(|m| i32::from(m.slot == protocol::ModelSlot::B)),
            last_seen_ms: now_ms(),
            last_accuracy_bp: c.validation.map(|f| i32::from(f.accuracy_bp)),
            last_p99_us: c.validation.map(|f| i64::from(f.p99_us)),
            // An ABI beyond i32 is no firmware of ours: unknown.
            runtime_abi: c.runtime_abi.and_then(|a| i32::try_from(a).ok()),
        };
        if let Ok(mut p) = self.pending.lock() {
            p.insert(c.device_id.to_owned(), seen);
        }
    }

    /// Shows the check-ins not written yet on `devices` (what this process knows is newest).
    pub fn overlay(&self, devices: &mut [crate::store::Device]) {
        let Ok(p) = self.pending.lock() else {
            return;
        };
        for d in devices {
            if let Some(s) = p.get(&d.id) {
                d.firmware_version = Some(s.firmware_version.clone());
                d.model_version = s.model_version.clone();
                d.model_slot = s.model_slot;
                d.last_seen_ms = Some(s.last_seen_ms);
                d.last_accuracy_bp = s.last_accuracy_bp;
                d.last_p99_us = s.last_p99_us;
                d.runtime_abi = s.runtime_abi;
            }
        }
    }

    /// Writes what is pending; returns how many devices. On failure the entries go back (a
    /// newer check-in of the same device wins over them).
    pub fn flush(&self, conn: &mut AnyConnection) -> Result<usize, ApiError> {
        let batch = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Err(ApiError::Internal("check-in buffer poisoned".into())),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        // Rows locked in one order (by id), so two writers of `devices` (a second server on
        // the same PostgreSQL, a rollout's assignments) wait for each other instead of
        // deadlocking.
        let mut rows: Vec<(&String, &Seen)> = batch.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let written = crate::db::write_tx(conn, |conn| {
            for &(id, s) in &rows {
                diesel::update(devices::table.find(id))
                    .set((
                        devices::firmware_version.eq(Some(&s.firmware_version)),
                        devices::model_version.eq(&s.model_version),
                        devices::model_slot.eq(s.model_slot),
                        devices::last_seen_ms.eq(Some(s.last_seen_ms)),
                        devices::last_accuracy_bp.eq(s.last_accuracy_bp),
                        devices::last_p99_us.eq(s.last_p99_us),
                        devices::runtime_abi.eq(s.runtime_abi),
                    ))
                    .execute(conn)?;
            }
            Ok::<_, ApiError>(batch.len())
        });
        if written.is_err() {
            if let Ok(mut p) = self.pending.lock() {
                for (id, s) in batch {
                    p.entry(id).or_insert(s);
                }
            }
        }
        written
    }
}

/// Flushes every `every` on a thread of its own, for the life of the process.
pub fn spawn_flusher(
    pool: DbPool,
    checkins: Arc<Checkins>,
    every: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("checkin-writer".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let outcome = pool
                    .get()
                    .map_err(ApiError::from)
                    .and_then(|mut c| checkins.flush(&mut c));
                if let Err(e) = outcome {
                    crate::log::warn("checkin_flush_failed", &[("error", e.to_string())]);
                }
            }
        })
        .map(drop)
}
