//! Prometheus metrics: counters kept in memory by the device API, gauges read from the
//! database at scrape time, rendered in the text exposition format.

use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::schema::{devices, rollouts};
use diesel::prelude::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub checkins: AtomicU64,
    pub chunks: AtomicU64,
    pub chunk_bytes: AtomicU64,
    pub reports: AtomicU64,
    /// Reports that were redeliveries (acknowledged, not stored again).
    pub duplicate_reports: AtomicU64,
    pub device_auth_failures: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text, with gauges from the database.
    pub fn render(
        &self,
        conn: &mut AnyConnection,
        now_ms: i64,
        waiters: &crate::waiters::Waiters,
    ) -> Result<String, ApiError> {
        let mut out = String::new();
        let counters = [
            (
                "fleet_checkins_total",
                "Device check-ins answered.",
                &self.checkins,
            ),
            (
                "fleet_chunks_total",
                "Artifact chunks served.",
                &self.chunks,
            ),
            (
                "fleet_chunk_bytes_total",
                "Artifact bytes served.",
                &self.chunk_bytes,
            ),
            (
                "fleet_reports_total",
                "Device reports stored.",
                &self.reports,
            ),
            (
                "fleet_duplicate_reports_total",
                "Redelivered device reports (acknowledged again).",
                &self.duplicate_reports,
            ),
            (
                "fleet_device_auth_failures_total",
                "Device requests with a missing or unknown credential.",
                &self.device_auth_failures,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let total: i64 = devices::table.count().get_result(conn)?;
        let online: i64 = devices::table
            .filter(devices::last_seen_ms.gt(now_ms - 5 * 60_000))
            .count()
            .get_result(conn)?;
        let _ = writeln!(
            out,
            "# HELP fleet_devices Enrolled devices.\n# TYPE fleet_devices gauge\nfleet_devices {total}\n# HELP fleet_devices_online Devices seen in the last 5 minutes.\n# TYPE fleet_devices_online gauge\nfleet_devices_online {online}"
        );
        let _ = writeln!(
            out,
            "# HELP fleet_rollouts Rollouts by state.\n# TYPE fleet_rollouts gauge"
        );
        for state in ["running", "paused", "completed", "halted", "aborted"] {
            let n: i64 = rollouts::table
                .filter(rollouts::state.eq(state))
                .count()
                .get_result(conn)?;
            let _ = writeln!(out, "fleet_rollouts{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP fleet_longpoll_waiting Long-poll check-ins waiting for a command now.\n# TYPE fleet_longpoll_waiting gauge\nfleet_longpoll_waiting {}\n# HELP fleet_longpoll_wakes_total Waiting check-ins woken by a change for their device.\n# TYPE fleet_longpoll_wakes_total counter\nfleet_longpoll_wakes_total {}",
            waiters.waiting(),
            waiters.woken()
        );
        Ok(out)
    }
}
