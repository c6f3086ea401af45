//! The states of a rollout and of each device within it: their names (the database's and the
//! API's strings), and the one place that says which transitions are legal. Every update that
//! changes a state filters on the states it may come from, so a transition is atomic and two
//! server processes cannot both make it.

use serde::Serialize;

/// A stored state name that is not one of ours (a database written by something else).
#[derive(Debug, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &[$ty] = &[$($ty::$variant),+];

            /// The name stored and shown.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            pub fn parse(s: &str) -> Option<$ty> {
                match s {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }

            /// The states from which `self` may be reached, as stored: what the conditional
            /// update of a transition to `self` filters on.
            pub fn sources(self) -> Vec<&'static str> {
                $ty::ALL
                    .iter()
                    .filter(|from| from.may_become(self))
                    .map(|from| from.as_str())
                    .collect()
            }
        }

        impl TryFrom<String> for $ty {
            type Error = UnknownState;
            fn try_from(s: String) -> Result<Self, UnknownState> {
                $ty::parse(&s).ok_or(UnknownState(s))
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Where a rollout is. `Running` and `Paused` are active; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    Running,
    Paused,
    Completed,
    Halted,
    Aborted,
}

names!(RolloutState {
    Running = "running",
    Paused = "paused",
    Completed = "completed",
    Halted = "halted",
    Aborted = "aborted",
});

impl RolloutState {
    /// The legal transitions: an operator pauses and resumes a running rollout; the engine
    /// completes a running one; a failed gate or an operator halts or aborts an active one.
    pub const fn may_become(self, to: RolloutState) -> bool {
        use RolloutState::*;
        matches!(
            (self, to),
            (Running, Paused)
                | (Paused, Running)
                | (Running, Completed)
                | (Running | Paused, Halted)
                | (Running | Paused, Aborted)
        )
    }

    pub const fn is_active(self) -> bool {
        matches!(self, RolloutState::Running | RolloutState::Paused)
    }
}

/// Where a device stands within a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// In a later stage, not offered yet.
    Planned,
    /// Offered the release, not finished.
    Offered,
    /// Validated and confirmed it.
    Confirmed,
    /// Refused it, failed, or went back on its own.
    Failed,
    /// Told to go back from a release that must not stay.
    Reverting,
    /// Back on its previous version.
    Reverted,
    /// Halted or aborted before this device finished; it stays on what it runs.
    Cancelled,
    /// Took a firmware that must go back, and no known good release is stored to go back to.
    Stranded,
}

names!(DeviceState {
    Planned = "planned",
    Offered = "offered",
    Confirmed = "confirmed",
    Failed = "failed",
    Reverting = "reverting",
    Reverted = "reverted",
    Cancelled = "cancelled",
    Stranded = "stranded",
});

impl DeviceState {
    /// The legal transitions. A device cancelled by a halt may still confirm what it had
    /// already taken (it is then sent back); only a confirmed device is sent back.
    pub const fn may_become(self, to: DeviceState) -> bool {
        use DeviceState::*;
        matches!(
            (self, to),
            (Planned, Offered)
                | (Planned | Offered, Cancelled)
                | (Offered | Cancelled, Confirmed)
                | (Offered, Failed)
                | (Confirmed, Reverting | Stranded)
                | (Reverting, Reverted)
        )
    }

    /// Not finished: planned or offered (what a halt or an abort cancels).
    pub const fn is_unfinished(self) -> bool {
        matches!(self, DeviceState::Planned | DeviceState::Offered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_as_stored() {
        for s in RolloutState::ALL {
            assert_eq!(RolloutState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        for s in DeviceState::ALL {
            assert_eq!(DeviceState::try_from(s.as_str().to_owned()).unwrap(), *s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!(DeviceState::try_from("bogus".to_owned()).is_err());
    }

    #[test]
    fn transitions_are_the_documented_ones() {
        assert_eq!(RolloutState::Halted.sources(), ["running", "paused"]);
        assert_eq!(RolloutState::Completed.sources(), ["running"]);
        assert_eq!(RolloutState::Paused.sources(), ["running"]);
        assert_eq!(RolloutState::Running.sources(), ["paused"]);
        assert!(
            RolloutState::ALL
                .iter()
                .filter(|s| !s.is_active())
                .all(|s| RolloutState::ALL.iter().all(|t| !s.may_become(*t))),
            "final states are final"
        );
        assert_eq!(DeviceState::Cancelled.sources(), ["planned", "offered"]);
        assert_eq!(DeviceState::Confirmed.sources(), ["offered", "cancelled"]);
        assert_eq!(DeviceState::Reverted.sources(), ["reverting"]);
    }
}
