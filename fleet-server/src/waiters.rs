//! Long-poll check-ins waiting for a command: one `Notify` per device that has a waiter, woken
//! after a change that may give the device a command is committed (a stage start, a halt's
//! send-back, an abort, a report). A waiter is a future on an actix worker: no thread, no
//! database connection and no timer of its own beyond its deadline; the map holds only the
//! devices waiting now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The longest any check-in waits, whatever it asks (and never beyond the poll interval).
pub const MAX_WAIT_MS: u32 = 120_000;

#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
    waiting: AtomicU64,
    woken: AtomicU64,
}

/// A registered waiter; leaving the map when the device's last waiter drops it.
#[derive(Debug)]
pub struct Watch<'a> {
    waiters: &'a Waiters,
    device: String,
    notify: Option<Arc<Notify>>,
}

impl Watch<'_> {
    pub fn notify(&self) -> &Notify {
        // Set from creation to drop.
        self.notify.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.waiters.waiting.fetch_sub(1, Ordering::Relaxed);
        drop(self.notify.take());
        if let Ok(mut map) = self.waiters.map.lock() {
            // Only the map's own reference left: nobody else waits for this device.
            if map
                .get(&self.device)
                .is_some_and(|n| Arc::strong_count(n) == 1)
            {
                map.remove(&self.device);
            }
        }
    }
}

impl Waiters {
    /// Registers a waiter for `device`. Create and enable its `notified()` before deciding the
    /// device's command, so that a change committed in between is not missed.
    pub fn watch(&self, device: &str) -> Watch<'_> {
        let notify = match self.map.lock() {
            Ok(mut map) => map.entry(device.to_owned()).or_default().clone(),
            // A poisoned map wakes nobody: the waiter answers at its deadline.
            Err(_) => Arc::default(),
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Watch {
            waiters: self,
            device: device.to_owned(),
            notify: Some(notify),
        }
    }

    /// Wakes the waiting check-ins of these devices; each decides its command again.
    pub fn wake<'d>(&self, devices: impl IntoIterator<Item = &'d str>) {
        let Ok(map) = self.map.lock() else {
            return;
        };
        if map.is_empty() {
            return;
        }
        for d in devices {
            if let Some(n) = map.get(d) {
                n.notify_waiters();
                self.woken.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Check-ins waiting now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Wakes sent since start (a device woken twice counts twice).
    pub fn woken(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }
}
