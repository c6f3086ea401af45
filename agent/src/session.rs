//! The device side of the protocol, sans-IO: what to send next, what to do with what arrives,
//! when to check in again. Time comes in as `now_ms`; bytes go out and come in as messages.

use crate::Error;
use crate::agent::{Agent, Next};
use artifact::Version;
use embedded_storage::nor_flash::NorFlash;
use protocol::{
    CheckIn, ChunkRequest, Command, Counters, Firmware, Report, RunningModel, ServerFrame,
};

/// A message for the server (or the gateway on a serial link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    CheckIn(CheckIn<'a>),
    ChunkRequest(ChunkRequest),
    Report(Report<'a>),
}

/// What was sent and is waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    CheckIn,
    Chunk,
    Report(u32),
}

/// Answers that do not come within this are given up on; the request goes again.
pub const TIMEOUT_MS: u64 = 10_000;
/// Check-in interval before the server has said one.
pub const DEFAULT_POLL_MS: u64 = 60_000;

/// One device's protocol session over its agent.
#[allow(missing_debug_implementations)] // holds the agent
pub struct Session<'f, F: NorFlash> {
    agent: Agent<'f, F>,
    firmware: Firmware,
    inferences: u64,
    boots: u32,
    next_check_in_ms: u64,
    /// The check-in interval the server last gave.
    poll_ms: u64,
    fetch: Option<ChunkRequest>,
    waiting: Option<(Waiting, u64)>,
    action: Option<Next>,
}

impl<'f, F: NorFlash> Session<'f, F> {
    /// A session that checks in at once.
    pub fn new(agent: Agent<'f, F>, firmware: Firmware, boots: u32, now_ms: u64) -> Self {
        // A download interrupted by a reset resumes when the next check-in's command repeats it.
        Session {
            agent,
            firmware,
            inferences: 0,
            boots,
            next_check_in_ms: now_ms,
            poll_ms: DEFAULT_POLL_MS,
            fetch: None,
            waiting: None,
            action: None,
        }
    }

    pub fn agent(&mut self) -> &mut Agent<'f, F> {
        &mut self.agent
    }

    /// What the running firmware is, once the platform has confirmed a trial.
    pub fn set_firmware(&mut self, firmware: Firmware) {
        self.firmware = firmware;
    }

    /// The platform's inference counter, reported in check-ins.
    pub fn set_inferences(&mut self, n: u64) {
        self.inferences = n;
    }

    /// Something only the platform can do (validate, reboot, reload the model), once.
    pub fn take_action(&mut self) -> Option<Next> {
        self.action.take()
    }

    /// When the session next needs `poll_transmit` (for the platform's timer).
    pub fn next_wake_ms(&self) -> u64 {
        match self.waiting {
            Some((_, since)) => since + TIMEOUT_MS,
            None if self.fetch.is_some() || self.agent.report().is_some() => 0,
            None => self.next_check_in_ms,
        }
    }

    /// The next message to send, if any: reports first (so the server learns outcomes), then
    /// the download, then the check-in when it is due. One request at a time.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Outgoing<'_>> {
        if let Some((_, since)) = self.waiting {
            if now_ms < since + TIMEOUT_MS {
                return None;
            }
            // No answer: the link dropped it; send again.
            self.waiting = None;
        }
        if let Some(r) = self.agent.report() {
            self.waiting = Some((Waiting::Report(r.seq), now_ms));
            return Some(Outgoing::Report(self.agent.message(&r)));
        }
        if let Some(req) = self.fetch {
            self.waiting = Some((Waiting::Chunk, now_ms));
            return Some(Outgoing::ChunkRequest(req));
        }
        if now_ms >= self.next_check_in_ms {
            self.waiting = Some((Waiting::CheckIn, now_ms));
            return Some(Outgoing::CheckIn(self.check_in()));
        }
        None
    }

    fn check_in(&self) -> CheckIn<'_> {
        let c = self.agent.counters();
        let identity = self.agent.identity();
        CheckIn {
            device_id: identity.device_id,
            board: identity.board,
            firmware: self.firmware,
            model: self
                .agent
                .active()
                .zip(self.agent.active_slot())
                .map(|(a, slot)| RunningModel {
                    name: a.name(),
                    version: Version::new(a.version.0, a.version.1, a.version.2),
                    slot,
                }),
            update: self.agent.progress(),
            validation: self.agent.last_validation(),
            runtime_abi: Some(identity.runtime_abi),
            wait_ms: None,
            streams: self
                .agent
                .accepts_streams()
                .then_some(protocol::STREAM_FDL1),
            counters: Counters {
                boots: self.boots,
                inferences: self.inferences,
                updates: c.updates,
                failures: c.failures,
                reverts: c.reverts,
            },
        }
    }

    /// Handles what came back. Errors of the agent are already reported to the server; they
    /// are returned for the platform's log.
    pub fn handle(&mut self, frame: &ServerFrame<'_>, now_ms: u64) -> Result<(), Error> {
        match *frame {
            ServerFrame::Command(cmd) => {
                if self.waiting.is_some_and(|(w, _)| w == Waiting::CheckIn) {
                    self.waiting = None;
                }
                if let Command::Idle { poll_after_s } = cmd {
                    self.poll_ms = u64::from(poll_after_s) * 1_000;
                }
                self.next_check_in_ms = now_ms + self.poll_ms;
                let next = self.agent.on_command(&cmd);
                self.apply(next)
            }
            ServerFrame::Chunk(chunk) => {
                if self.waiting.is_some_and(|(w, _)| w == Waiting::Chunk) {
                    self.waiting = None;
                }
                // A late duplicate of an answered request is ignored.
                if self.fetch.is_none_or(|f| {
                    f.release != chunk.release
                        || f.offset != chunk.offset
                        || f.stream != chunk.stream
                }) {
                    return Ok(());
                }
                self.fetch = None;
                let next = match chunk.stream {
                    Some(id) => {
                        self.agent
                            .on_stream_chunk(chunk.release, id, chunk.offset, chunk.data)
                    }
                    None => self.agent.on_chunk(chunk.release, chunk.offset, chunk.data),
                };
                self.apply(next)
            }
            ServerFrame::ReportAck { seq } => {
                if self.waiting.is_some_and(|(w, _)| w == Waiting::Report(seq)) {
                    self.waiting = None;
                }
                self.agent.delivered(seq)
            }
            // A gateway's long-poll saw a command for this device: fetch it with a check-in
            // now (after any report or chunk in flight). A check-in in flight brings it anyway.
            ServerFrame::CheckInNow => {
                if !self.waiting.is_some_and(|(w, _)| w == Waiting::CheckIn) {
                    self.next_check_in_ms = now_ms;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, next: Result<Next, Error>) -> Result<(), Error> {
        match next? {
            Next::Idle => {}
            Next::Fetch(req) => self.fetch = Some(req),
            other => self.action = Some(other),
        }
        Ok(())
    }

    /// After the platform ran `validate` or `confirm_firmware`: continue with what they said.
    /// An update that ended (switched, or rejected) is followed by a check-in at once, so the
    /// server sees the device's new state without waiting for the poll interval.
    pub fn after_action(&mut self, next: Result<Next, Error>) -> Result<(), Error> {
        if matches!(next, Ok(Next::Idle | Next::Switched(_)) | Err(_)) {
            self.next_check_in_ms = 0;
        }
        self.apply(next)
    }
}
