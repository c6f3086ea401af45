//! The report spool, store and forward: a device's report is written durably to
//! DATA/spool/{device}/{seq:010}.cbor (with the device's credential beside it) before the
//! device gets its acknowledgement, then delivered to the server in seq order by a task of its
//! own, through server outages and gateway restarts. Delivered reports are deleted; reports the
//! server refuses are moved to DATA/rejected/{device}/ for an operator, never dropped.
//!
//! Delivery is at least once (a crash between the server's answer and the delete sends a
//! report again); the server stores each (device, seq) once, so the outcome is exactly once.

use crate::stats::Counters;
use crate::upstream::{Answer, Upstream};
use crate::{durable, log};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Wait before trying an unreachable server again (a new report wakes the task sooner).
pub(crate) const BACKOFF: Duration = Duration::from_millis(500);
/// Wait before trying again a device whose stored credential the server does not know (a new
/// report from the device, with its current credential, retries at once).
const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(30);
/// The spool is scanned at least this often even when nothing wakes the task.
const RESCAN: Duration = Duration::from_secs(5);
/// Reports kept per device: past this a device gets no acknowledgement and keeps its reports
/// in its own flash, so a device that is never let in cannot fill the gateway's disk.
const MAX_PER_DEVICE: usize = 1000;
const CREDENTIAL: &str = "credential";

/// What became of a report handed to the spool.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Written and durable.
    New,
    /// Already spooled with this seq: the same report, sent again after a lost acknowledgement.
    Again,
    /// The device has `MAX_PER_DEVICE` reports waiting.
    Full,
}

/// The state of one device's spool after a delivery attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Every report was delivered (or rejected).
    Empty,
    /// Reports remain: the server could not be reached.
    Unavailable,
    /// Reports remain: the server does not know the credential.
    Unauthorized,
}

fn report_name(seq: u32) -> String {
    format!("{seq:010}.cbor")
}

/// Spooled reports of the device in `dir`, in seq order (names are zero-padded).
fn pending(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            if name.ends_with(".cbor") && !durable::is_temp(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    rejected: PathBuf,
    upstream: Arc<Upstream>,
    stats: Arc<Counters>,
    /// Woken by every new report.
    wake: Notify,
    /// One delivery at a time per device (the delivery task, or a link about to check in), so
    /// reports go in order and each once.
    delivering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The credential last written for each device (spares a read per report).
    credentials: Mutex<HashMap<String, String>>,
    /// Devices whose stored credential was refused, and when to try again.
    deferred: Mutex<HashMap<String, Instant>>,
    /// Devices whose delivery is failing: logged when it starts and when it ends, not at
    /// every retry.
    failing: Mutex<HashSet<String>>,
}

impl Spool {
    pub(crate) fn new(data: &Path, upstream: Arc<Upstream>, stats: Arc<Counters>) -> Spool {
        Spool {
            dir: data.join("spool"),
            rejected: data.join("rejected"),
            upstream,
            stats,
            wake: Notify::new(),
            delivering: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            deferred: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashSet::new()),
        }
    }

    /// Creates the spool's directories and removes temporary files of a crashed write.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        durable::create_dir(&self.dir)?;
        durable::create_dir(&self.rejected)?;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                durable::remove_temps(&entry.path())?;
            }
        }
        Ok(())
    }

    fn delivery_lock(&self, device: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.delivering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(device.to_owned())
            .or_default()
            .clone()
    }

    /// Marks `device`'s delivery failing or not; whether that changed.
    fn set_failing(&self, device: &str, failing: bool) -> bool {
        let mut set = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing {
            set.insert(device.to_owned())
        } else {
            set.remove(device)
        }
    }

    /// Spools report `seq` of `device` (the Report message's bytes); returns once it is durable.
    /// Device ids are checked by the link (never `.` or `..`), so the id is a plain file name.
    pub(crate) async fn store(
        &self,
        device: &str,
        credential: &str,
        seq: u32,
        message: Vec<u8>,
    ) -> io::Result<Stored> {
        let dir = self.dir.join(device);
        let known = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .is_some_and(|c| c == credential);
        let cred = credential.to_owned();
        let stored = blocking(move || {
            durable::create_dir(&dir)?;
            let path = dir.join(report_name(seq));
            if path.exists() {
                return Ok(Stored::Again);
            }
            if pending(&dir)?.len() >= MAX_PER_DEVICE {
                return Ok(Stored::Full);
            }
            // The credential first: a report on disk always has one to be delivered with.
            let cred_path = dir.join(CREDENTIAL);
            if !known && std::fs::read(&cred_path).ok().as_deref() != Some(cred.as_bytes()) {
                durable::write(&cred_path, cred.as_bytes(), true)?;
            }
            durable::write(&path, &message, false)?;
            Ok(Stored::New)
        })
        .await?;
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device.to_owned(), credential.to_owned());
        if stored == Stored::New {
            self.stats.add(|s| s.reports_spooled += 1);
            self.deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(device);
            self.wake.notify_one();
        }
        Ok(stored)
    }

    /// Delivers the spooled reports of `device` in seq order, with `credential` (a link's
    /// current one) or else the stored one; stops at the first that cannot be delivered.
    pub(crate) async fn deliver(&self, device: &str, credential: Option<&str>) -> Flush {
        let lock = self.delivery_lock(device);
        let _one_at_a_time = lock.lock().await;
        let dir = self.dir.join(device);
        let names = {
            let dir = dir.clone();
            blocking(move || match pending(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                other => other,
            })
            .await
        };
        let names = match names {
            Ok(n) if n.is_empty() => return Flush::Empty,
            Ok(n) => n,
            Err(e) => {
                log::warn(
                    "spool_unreadable",
                    &[("device", device.into()), ("error", e.to_string())],
                );
                return Flush::Unavailable;
            }
        };
        let credential = match credential {
            Some(c) => c.to_owned(),
            None => {
                let path = dir.join(CREDENTIAL);
                match blocking(move || std::fs::read_to_string(path)).await {
                    Ok(c) => c,
                    Err(e) => {
                        log::warn(
                            "spool_no_credential",
                            &[("device", device.into()), ("error", e.to_string())],
                        );
                        return Flush::Unauthorized;
                    }
                }
            }
        };
        for name in names {
            let path = dir.join(&name);
            let body = {
                let reading = path.clone();
                match blocking(move || std::fs::read(reading)).await {
                    Ok(b) => b,
                    // Delivered meanwhile by a call that held the lock before (it is gone).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        log::warn(
                            "spool_unreadable",
                            &[
                                ("path", path.display().to_string()),
                                ("error", e.to_string()),
                            ],
                        );
                        return Flush::Unavailable;
                    }
                }
            };
            match self.upstream.post("reports", &credential, body).await {
                Answer::Ok(_) => {
                    // Not synced: a delete lost in a power cut means one more delivery,
                    // which the server recognises by (device, seq).
                    let delivered = path.clone();
                    let _ = blocking(move || std::fs::remove_file(delivered)).await;
                    self.stats.add(|s| s.reports_delivered += 1);
                    if self.set_failing(device, false) {
                        log::info("report_delivery_resumed", &[("device", device.into())]);
                    }
                }
                Answer::Unauthorized => return Flush::Unauthorized,
                Answer::Unavailable(why) => {
                    if self.set_failing(device, true) {
                        log::warn(
                            "report_delivery_deferred",
                            &[("device", device.into()), ("report", name), ("why", why)],
                        );
                    }
                    return Flush::Unavailable;
                }
                refused @ (Answer::Forbidden | Answer::Refused(_)) => {
                    let status = match refused {
                        Answer::Refused(code) => code,
                        _ => 403,
                    };
                    let to = self.rejected.join(device);
                    let moved = blocking(move || {
                        durable::create_dir(&to)?;
                        std::fs::rename(&path, to.join(path.file_name().unwrap_or_default()))?;
                        durable::sync_dir(&to)?;
                        durable::sync_dir(path.parent().unwrap_or(Path::new(".")))
                    })
                    .await;
                    log::warn(
                        "report_rejected",
                        &[
                            ("device", device.into()),
                            ("report", name),
                            ("status", status.to_string()),
                            ("moved", format!("{moved:?}")),
                        ],
                    );
                    if moved.is_err() {
                        return Flush::Unavailable;
                    }
                    self.stats.add(|s| s.reports_rejected += 1);
                }
            }
        }
        Flush::Empty
    }

    /// One pass over every device's spool; whether some must be tried again soon.
    async fn deliver_all(&self) -> bool {
        let dir = self.dir.clone();
        let devices = blocking(move || {
            let mut devices = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    if let Ok(name) = entry.file_name().into_string() {
                        devices.push(name);
                    }
                }
            }
            Ok(devices)
        })
        .await
        .unwrap_or_else(|e| {
            log::warn("spool_unreadable", &[("error", e.to_string())]);
            Vec::new()
        });
        let mut retry = false;
        for device in devices {
            let deferred = self
                .deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&device)
                .is_some_and(|until| Instant::now() < *until);
            if deferred {
                continue;
            }
            match self.deliver(&device, None).await {
                Flush::Empty => {}
                Flush::Unavailable => retry = true,
                Flush::Unauthorized => {
                    log::warn("report_unauthorized", &[("device", device.clone())]);
                    self.deferred
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(device, Instant::now() + UNAUTHORIZED_RETRY);
                }
            }
        }
        retry
    }

    /// The delivery task: passes over the spool until `shutdown`, every `BACKOFF` while the
    /// server is unreachable, at once when a report arrives.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let retry = tokio::select! {
                retry = self.deliver_all() => retry,
                _ = shutdown.changed() => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(if retry { BACKOFF } else { RESCAN }) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_report_is_stored_once_and_kept_while_the_server_is_away() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Counters::load(dir.path()));
        // Nothing listens on port 1: every delivery is refused at connect.
        let mut config = crate::Config::new("http://127.0.0.1:1", dir.path());
        config.request_timeout = Duration::from_secs(1);
        let upstream = Arc::new(Upstream::new(&config).unwrap());
        let spool = Spool::new(dir.path(), upstream, stats.clone());
        spool.prepare().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = |seq, body: &[u8]| spool.store("dev-1", "cred", seq, body.to_vec());
            assert_eq!(store(10, b"ten").await.unwrap(), Stored::New);
            assert_eq!(store(2, b"two").await.unwrap(), Stored::New);
            assert_eq!(store(10, b"again").await.unwrap(), Stored::Again);
            assert_eq!(spool.deliver("dev-1", None).await, Flush::Unavailable);
            assert_eq!(spool.deliver("dev-2", None).await, Flush::Empty);
        });
        let d = dir.path().join("spool/dev-1");
        assert_eq!(pending(&d).unwrap(), ["0000000002.cbor", "0000000010.cbor"]);
        assert_eq!(std::fs::read(d.join("0000000010.cbor")).unwrap(), b"ten");
        let cred = d.join(CREDENTIAL);
        assert_eq!(std::fs::read_to_string(&cred).unwrap(), "cred");
        let mode = std::fs::metadata(&cred).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials are the owner's only");
        let st = stats.snapshot();
        assert_eq!((st.reports_spooled, st.reports_delivered), (2, 0));
    }
}
