//! A scripted server for device tests: it offers one release, serves its chunks, keeps each
//! report once, and can drop answers as a flaky link would. Frames cross as bytes, so both
//! directions of the codec are in the loop.

use crate::release::Release;
use artifact::Version;
use protocol::{Chunk, Command, DeviceFrame, ServerFrame, Step};
use std::collections::BTreeMap;

/// What the scripted server knows and has seen.
#[derive(Debug)]
pub struct Scripted {
    pub offer: Option<Release>,
    /// Commands to send at the next check-ins, before any offer.
    pub queued: Vec<Command<'static>>,
    /// Reports by (device seq): a redelivered one is not counted twice.
    pub reports: BTreeMap<u32, (u64, Step)>,
    /// Drop every n-th answer (0: never).
    pub drop_every: usize,
    pub answers: usize,
    pub check_ins: usize,
    /// Hellos seen (a serial link opens each check-in with one; a session sends none).
    pub hellos: Vec<String>,
    pub last_model: Option<Version>,
}

impl Scripted {
    pub fn new(offer: Option<Release>) -> Self {
        Scripted {
            offer,
            queued: vec![],
            reports: BTreeMap::new(),
            drop_every: 0,
            answers: 0,
            check_ins: 0,
            hellos: vec![],
            last_model: None,
        }
    }

    /// A failure or revert was reported for `release`.
    pub fn failed(&self, release: u64) -> bool {
        self.reports
            .values()
            .any(|(r, s)| *r == release && matches!(s, Step::Failed(_) | Step::Reverted(_)))
    }

    /// The steps reported, in the device's order.
    pub fn steps(&self) -> Vec<Step> {
        self.reports.values().map(|(_, s)| *s).collect()
    }

    /// The answer to one device frame (its CBOR payload), as bytes; `None` for a `Hello`
    /// (which answers nothing) and when the link drops it.
    pub fn answer(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; 8192];
        let reply = match DeviceFrame::decode(frame).expect("device frame") {
            DeviceFrame::CheckIn(c) => {
                self.check_ins += 1;
                self.last_model = c.model.map(|m| m.version);
                if !self.queued.is_empty() {
                    ServerFrame::Command(self.queued.remove(0))
                } else {
                    match &self.offer {
                        Some(r) if self.last_model != Some(r.version) && !self.failed(r.id) => {
                            ServerFrame::Command(Command::Update {
                                release: r.id,
                                envelope: &r.envelope,
                                url: "/a",
                                stream: None,
                            })
                        }
                        _ => ServerFrame::Command(Command::Idle { poll_after_s: 300 }),
                    }
                }
            }
            DeviceFrame::ChunkRequest(req) => {
                let r = self.offer.as_ref().expect("a release");
                let end = ((req.offset + req.len) as usize).min(r.payload.len());
                ServerFrame::Chunk(Chunk {
                    release: req.release,
                    offset: req.offset,
                    data: &r.payload[req.offset as usize..end],
                    stream: None,
                })
            }
            DeviceFrame::Report(r) => {
                self.reports.entry(r.seq).or_insert((r.release, r.step));
                ServerFrame::ReportAck { seq: r.seq }
            }
            DeviceFrame::Hello(h) => {
                self.hellos.push(h.device_id.to_owned());
                return None;
            }
        };
        let n = reply.encode(&mut out).expect("encode");
        out.truncate(n);
        self.answers += 1;
        if self.drop_every > 0 && self.answers % self.drop_every == 0 {
            return None;
        }
        Some(out)
    }
}
