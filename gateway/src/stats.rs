//! What the gateway did, as counters that survive restarts: loaded from DATA/stats.json at
//! start, written back (atomically) at most every 500 ms when they changed, and at shutdown.
//! A SIGKILL loses at most the last 500 ms of counts: they are statistics, not state, and
//! writing them synchronously on every chunk would cost a disk sync per chunk.

use crate::durable;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How often changed counters are written.
pub(crate) const WRITE_EVERY: Duration = Duration::from_millis(500);

/// The counters, as in DATA/stats.json (one JSON object with these keys; missing keys read as
/// 0, so a file of an older gateway loads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Bytes of response bodies received from the server for downloads: artifact GETs plus
    /// forwarded chunk answers.
    pub uplink_bytes: u64,
    /// Chunk data bytes sent to devices (from the cache or forwarded).
    pub device_bytes: u64,
    /// Links opened (TCP connections accepted, serial ports opened).
    pub links: u64,
    /// Check-ins the server answered.
    pub checkins_forwarded: u64,
    /// Chunk requests answered from the cache.
    pub chunks_from_cache: u64,
    /// Chunk requests forwarded to the server and answered by it.
    pub chunks_forwarded: u64,
    /// Reports newly written to the spool (a repeated report is not counted again).
    pub reports_spooled: u64,
    /// Spooled reports the server accepted.
    pub reports_delivered: u64,
    /// Spooled reports the server refused (moved to DATA/rejected/).
    pub reports_rejected: u64,
    /// Whole-release downloads from the server into the cache.
    pub artifact_fetches: u64,
    /// Boards told to check in now (`CheckInNow`) because their long-poll brought a command.
    pub pushes: u64,
}

/// The live counters, shared by every task.
#[derive(Debug)]
pub(crate) struct Counters {
    path: PathBuf,
    stats: Mutex<Stats>,
    /// Bumped on every change; the writer compares it with what it last wrote.
    generation: AtomicU64,
}

impl Counters {
    /// Loads DATA/stats.json if there is one. A file that does not parse is set aside as
    /// stats.json.bad (and counting starts again) rather than stopping the gateway.
    pub(crate) fn load(data: &Path) -> Counters {
        let path = data.join("stats.json");
        let stats = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                crate::log::warn(
                    "stats_unreadable",
                    &[
                        ("path", path.display().to_string()),
                        ("error", e.to_string()),
                    ],
                );
                let _ = std::fs::rename(&path, data.join("stats.json.bad"));
                Stats::default()
            }),
            Err(_) => Stats::default(),
        };
        Counters {
            path,
            stats: Mutex::new(stats),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the counters with `f`.
    pub(crate) fn add(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the counters as they are now.
    pub(crate) fn write(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.snapshot()).map_err(std::io::Error::other)?;
        durable::write(&self.path, &json, false)
    }

    /// Writes the counters every `WRITE_EVERY` while they change, until `shutdown`.
    pub(crate) async fn run(self: std::sync::Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut written = self.generation.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WRITE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            // Read before the snapshot: a change made during the write is written next time.
            let now = self.generation.load(Ordering::Relaxed);
            if now == written {
                continue;
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.write()).await {
                Ok(Ok(())) => written = now,
                Ok(Err(e)) => crate::log::warn("stats_write_failed", &[("error", e.to_string())]),
                Err(_) => return,
            }
        }
    }
}
