//! The release cache: each release's whole payload, and each of its streams a device asked for
//! (protocol 1.3: compressed or a delta, `GET /api/device/artifacts/{release}/streams/{id}`),
//! fetched from the server once per gateway and served to every device the server assigned the
//! release to, chunk by chunk, from memory. Kept on disk in DATA/cache/{release} and
//! DATA/cache/{release}.stream-{id} (written atomically), so a restarted gateway does not fetch
//! them again.
//!
//! Who may read a release is the server's decision: a device is served from the cache only
//! for the release its last check-in through this gateway was told to install, and only on a
//! link that presented the same credential as that check-in. A stream is cached under its
//! release: the server served it for that release (it refuses a stream of another one), so a
//! device assigned the release may read it.

use crate::stats::Counters;
use crate::upstream::{Answer, Upstream};
use crate::{durable, log};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Why a release's payload is not in the cache.
#[derive(Debug)]
pub(crate) enum Miss {
    /// The server refused the download (403, or another 4xx): let it answer the chunk request
    /// itself.
    Forward,
    /// The credential is unknown to the server.
    Unauthorized,
    /// The server could not be reached: the device asks again after its timeout.
    Unavailable(String),
}

/// One payload or stream, filled once: concurrent readers wait for the first one's download.
type Slot = Arc<OnceCell<Arc<Vec<u8>>>>;

/// What is cached: a release's plain payload (`stream` None) or one of its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub release: u64,
    pub stream: Option<u64>,
}

impl Key {
    fn file_name(&self) -> String {
        match self.stream {
            None => self.release.to_string(),
            Some(s) => format!("{}.stream-{s}", self.release),
        }
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("release", self.release.to_string())];
        if let Some(s) = self.stream {
            f.push(("stream", s.to_string()));
        }
        f
    }
}

#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    releases: Mutex<HashMap<Key, Slot>>,
    /// Device id -> (credential, release) from the device's last check-in answer.
    assigned: Mutex<HashMap<String, (String, u64)>>,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf) -> Cache {
        Cache {
            dir,
            releases: Mutex::new(HashMap::new()),
            assigned: Mutex::new(HashMap::new()),
        }
    }

    fn assigned(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, u64)>> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server told `device` (checking in with `credential`) to install `release`.
    pub(crate) fn assign(&self, device: &str, credential: &str, release: u64) {
        self.assigned()
            .insert(device.to_owned(), (credential.to_owned(), release));
    }

    /// The server told `device` something else: its earlier release (if any) is no longer
    /// its to read (a halted rollout takes assignments back).
    pub(crate) fn unassign(&self, device: &str) {
        self.assigned().remove(device);
    }

    /// Whether `device` on a link with `credential` may be served `release` from the cache.
    pub(crate) fn is_assigned(&self, device: &str, credential: &str, release: u64) -> bool {
        self.assigned()
            .get(device)
            .is_some_and(|(c, r)| c == credential && *r == release)
    }

    /// The payload of `key.release`, or its stream `key.stream`: from memory, else from disk,
    /// else downloaded from the server with `credential` (once: concurrent callers wait for the
    /// one download).
    pub(crate) async fn payload(
        &self,
        key: Key,
        credential: &str,
        upstream: &Upstream,
        stats: &Counters,
    ) -> Result<Arc<Vec<u8>>, Miss> {
        let slot = self
            .releases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        // A failed fill leaves the cell empty: the next request tries again.
        slot.get_or_try_init(|| self.fill(key, credential, upstream, stats))
            .await
            .cloned()
    }

    async fn fill(
        &self,
        key: Key,
        credential: &str,
        upstream: &Upstream,
        stats: &Counters,
    ) -> Result<Arc<Vec<u8>>, Miss> {
        let path = self.dir.join(key.file_name());
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path)).await
        };
        match read {
            Ok(Ok(bytes)) => {
                let mut fields = key.fields();
                fields.push(("bytes", bytes.len().to_string()));
                log::info("cache_loaded", &fields);
                return Ok(Arc::new(bytes));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => log::warn(
                "cache_unreadable",
                &[
                    ("path", path.display().to_string()),
                    ("error", e.to_string()),
                ],
            ),
            Err(e) => return Err(Miss::Unavailable(e.to_string())),
        }
        let bytes = match upstream.artifact(key.release, key.stream, credential).await {
            Answer::Ok(bytes) => bytes,
            Answer::Unauthorized => return Err(Miss::Unauthorized),
            Answer::Forbidden | Answer::Refused(_) => return Err(Miss::Forward),
            Answer::Unavailable(why) => return Err(Miss::Unavailable(why)),
        };
        stats.add(|s| {
            s.uplink_bytes += bytes.len() as u64;
            s.artifact_fetches += 1;
        });
        let mut fields = key.fields();
        fields.push(("bytes", bytes.len().to_string()));
        log::info("cache_fetched", &fields);
        let bytes = Arc::new(bytes);
        let keep = bytes.clone();
        let stored = tokio::task::spawn_blocking(move || durable::write(&path, &keep, false)).await;
        if let Some(e) = match stored {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        } {
            // Still served from memory; only a restart would fetch it again.
            let mut fields = key.fields();
            fields.push(("error", e));
            log::warn("cache_write_failed", &fields);
        }
        Ok(bytes)
    }
}
