//! Step reports for the server: kept in RAM and in flash until delivered, so that none is lost
//! across resets, and redelivered by sequence number.

use super::Agent;
use crate::Error;
use crate::store::{Key, REPORT_SLOTS};
use artifact::{ComponentKind, Version};
use embedded_storage::nor_flash::NorFlash;
use protocol::Step;

/// Reports kept until delivered (in RAM and in flash).
pub(super) const REPORTS: usize = REPORT_SLOTS as usize;

/// A step report waiting for delivery (the device id is added when it is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingReport {
    pub seq: u32,
    pub release: u64,
    pub component: ComponentKind,
    pub version: Version,
    pub step: Step,
}

impl<'f, F: NorFlash> Agent<'f, F> {
    /// The next report to deliver; `delivered` removes it once the server has it.
    pub fn report(&self) -> Option<PendingReport> {
        self.reports.front().copied()
    }

    /// The server has the report `seq`: forget it (in flash too).
    pub fn delivered(&mut self, seq: u32) -> Result<(), Error> {
        if self.reports.front().is_some_and(|r| r.seq == seq) {
            self.reports.pop_front();
            self.store
                .remove(Key::Report((seq % REPORTS as u32) as u8), &mut self.buf)?;
        }
        Ok(())
    }

    /// The report as the protocol carries it.
    pub fn message<'a>(&'a self, r: &PendingReport) -> protocol::Report<'a> {
        protocol::Report {
            device_id: self.identity.device_id,
            seq: r.seq,
            release: r.release,
            component: r.component,
            version: r.version,
            step: r.step,
        }
    }

    /// Reads the undelivered reports a reset left in flash, oldest first.
    pub(super) fn load_reports(&mut self) -> Result<(), Error> {
        let mut found: heapless::Vec<PendingReport, REPORTS> = heapless::Vec::new();
        let mut bytes = [0u8; 128];
        for slot in 0..REPORT_SLOTS {
            let Some(n) = self
                .store
                .get_bytes(Key::Report(slot), &mut self.buf, &mut bytes)?
            else {
                continue;
            };
            if let Ok(r) = protocol::decode::<protocol::Report>(&bytes[..n]) {
                let _ = found.push(PendingReport {
                    seq: r.seq,
                    release: r.release,
                    component: r.component,
                    version: r.version,
                    step: r.step,
                });
            }
        }
        // Insertion sort by sequence number: at most 16 entries, and far less code on the
        // device than the generic sort.
        for i in 1..found.len() {
            let mut j = i;
            while j > 0 && found[j - 1].seq > found[j].seq {
                found.swap(j - 1, j);
                j -= 1;
            }
        }
        for r in found {
            let _ = self.reports.push_back(r);
        }
        Ok(())
    }

    pub(super) fn push_report(
        &mut self,
        release: u64,
        component: ComponentKind,
        version: Version,
        step: Step,
    ) -> Result<(), Error> {
        self.counters.report_seq = self.counters.report_seq.wrapping_add(1);
        if self.reports.is_full() {
            // Keep the newest: the oldest step is implied by the later ones (and its flash slot
            // is the one the new report takes).
            self.reports.pop_front();
        }
        let report = PendingReport {
            seq: self.counters.report_seq,
            release,
            component,
            version,
            step,
        };
        let _ = self.reports.push_back(report);
        // The counter first: a report is never stored under a sequence number used before.
        self.store
            .set(Key::Counters, &self.counters, &mut self.buf)?;
        let mut bytes = [0u8; 128];
        let n = protocol::encode(&self.message(&report), &mut bytes).map_err(|_| Error::Storage)?;
        self.store.set_bytes(
            Key::Report((report.seq % REPORTS as u32) as u8),
            &bytes[..n],
            &mut self.buf,
        )
    }
}
