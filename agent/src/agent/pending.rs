//! The update in progress: where it stands, the only moves it can make, and its record in flash.

use crate::store::Pending;
use artifact::ComponentKind;

/// Where a release's payloads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// The inactive model slot, from its start.
    Model,
    /// The DFU slot, after the image header.
    Firmware,
}

impl Target {
    pub(super) fn kind(self) -> ComponentKind {
        match self {
            Target::Model => ComponentKind::Model,
            Target::Firmware => ComponentKind::Firmware,
        }
    }
}

/// Where the update stands. Only `Stage::next` moves it on; it ends by being cleared (switched,
/// confirmed, reverted or abandoned), never by a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Payloads being written and hashed. A model stays here when complete: its validation
    /// switches to it or drops it.
    Downloading(Target),
    /// Firmware written and marked for swap: waiting for the reboot.
    Installed,
    /// Firmware booted on trial: waiting for `confirm_firmware`.
    Trial,
    /// Firmware failed its trial: waiting for the reset that makes the bootloader go back.
    Rejected,
}

/// What moves an update from one stage to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// The last payload byte is written and its digest matches.
    Downloaded,
    /// The new firmware runs on trial.
    Booted,
    /// The trial failed the active model's policy.
    TrialFailed,
}

impl Stage {
    /// Every legal transition; `None` for an event that does not move this stage.
    pub(super) fn next(self, event: Event) -> Option<Stage> {
        match (self, event) {
            (Stage::Downloading(Target::Firmware), Event::Downloaded) => Some(Stage::Installed),
            (Stage::Installed, Event::Booted) => Some(Stage::Trial),
            (Stage::Trial, Event::TrialFailed) => Some(Stage::Rejected),
            _ => None,
        }
    }

    pub(super) fn downloading(self) -> bool {
        matches!(self, Stage::Downloading(_))
    }

    pub(super) fn target(self) -> Target {
        match self {
            Stage::Downloading(target) => target,
            Stage::Installed | Stage::Trial | Stage::Rejected => Target::Firmware,
        }
    }

    /// The record's `(firmware, phase)`: the values devices in the field have in flash.
    fn encode(self) -> (bool, u8) {
        match self {
            Stage::Downloading(Target::Model) => (false, 0),
            Stage::Downloading(Target::Firmware) => (true, 0),
            Stage::Installed => (true, 1),
            Stage::Trial => (true, 2),
            Stage::Rejected => (true, 3),
        }
    }

    /// `None` for a pair `encode` never gives.
    fn decode(firmware: bool, phase: u8) -> Option<Stage> {
        Some(match (firmware, phase) {
            (false, 0) => Stage::Downloading(Target::Model),
            (true, 0) => Stage::Downloading(Target::Firmware),
            (true, 1) => Stage::Installed,
            (true, 2) => Stage::Trial,
            (true, 3) => Stage::Rejected,
            _ => return None,
        })
    }
}

/// An update in progress (its envelope is stored under `Key::Envelope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Update {
    pub(super) release: u64,
    /// Bytes of the payloads written and hashed as persisted (the start of an erase sector, or
    /// the total when the download is complete).
    pub(super) offset: u32,
    pub(super) total: u32,
    pub(super) stage: Stage,
}

impl Update {
    /// From its record; `None` if the record holds a stage this agent never writes.
    pub(super) fn from_record(r: Pending) -> Option<Self> {
        Some(Update {
            release: r.release,
            offset: r.offset,
            total: r.total,
            stage: Stage::decode(r.firmware, r.phase)?,
        })
    }

    /// Its record: the same fields, in the same postcard encoding, as before the stage was a type.
    pub(super) fn record(self) -> Pending {
        let (firmware, phase) = self.stage.encode();
        Pending {
            release: self.release,
            offset: self.offset,
            total: self.total,
            firmware,
            phase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Stage; 5] = [
        Stage::Downloading(Target::Model),
        Stage::Downloading(Target::Firmware),
        Stage::Installed,
        Stage::Trial,
        Stage::Rejected,
    ];

    #[test]
    fn records_keep_their_encoding() {
        for stage in ALL {
            let u = Update {
                release: 7,
                offset: 4096,
                total: 9000,
                stage,
            };
            assert_eq!(Update::from_record(u.record()), Some(u));
        }
        assert_eq!(Stage::Downloading(Target::Model).encode(), (false, 0));
        assert_eq!(Stage::Rejected.encode(), (true, 3));
        assert_eq!(Stage::decode(false, 1), None);
        assert_eq!(Stage::decode(true, 4), None);
    }

    #[test]
    fn only_the_firmware_path_moves() {
        let moves: usize = ALL
            .iter()
            .map(|s| {
                [Event::Downloaded, Event::Booted, Event::TrialFailed]
                    .iter()
                    .filter(|&&e| s.next(e).is_some())
                    .count()
            })
            .sum();
        assert_eq!(moves, 3);
        let end = [Event::Downloaded, Event::Booted, Event::TrialFailed]
            .iter()
            .try_fold(Stage::Downloading(Target::Firmware), |s, &e| s.next(e));
        assert_eq!(end, Some(Stage::Rejected));
        assert_eq!(
            Stage::Downloading(Target::Model).next(Event::Downloaded),
            None
        );
    }
}
