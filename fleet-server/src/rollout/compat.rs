//! Which selected devices can run a model release: the runtime ABI its signed manifest
//! requires against the ABI each device's check-ins say its firmware provides.

use crate::store::{Artifact, Device};
use serde::Serialize;

/// What rollout creation says about the selected devices and a model's runtime ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compatibility {
    /// The runtime ABI the model needs (its manifest's `required_abi`).
    pub required_abi: u32,
    /// Selected devices whose firmware provides an older ABI: they will refuse the release
    /// (`abi_mismatch`) before writing it.
    pub too_old: u32,
    /// Selected devices that never said their ABI (firmware before protocol revision 1.1, or
    /// no check-in yet).
    pub unknown: u32,
}

/// The runtime ABI a stored artifact requires: `None` for firmware. The envelope was verified
/// at upload; only its manifest is read here.
pub fn required_abi(art: &Artifact) -> Result<Option<u32>, artifact::Error> {
    let envelope = artifact::Envelope::decode(&art.envelope)?;
    Ok(artifact::Manifest::decode(envelope.body)?.required_abi)
}

/// Counts the devices of `selected` that cannot run a model needing `required_abi`, and those
/// whose ABI is unknown.
pub fn count(required_abi: u32, selected: &[Device]) -> Compatibility {
    let mut c = Compatibility {
        required_abi,
        too_old: 0,
        unknown: 0,
    };
    for d in selected {
        match d.runtime_abi.map(|a| u32::try_from(a).unwrap_or(0)) {
            None => c.unknown += 1,
            Some(abi) if abi < required_abi => c.too_old += 1,
            Some(_) => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(runtime_abi: Option<i32>) -> Device {
        Device {
            id: "d".into(),
            board: "mps2-an386".into(),
            tags: String::new(),
            credential_sha256: String::new(),
            firmware_version: None,
            model_version: None,
            model_slot: None,
            last_seen_ms: None,
            last_accuracy_bp: None,
            last_p99_us: None,
            runtime_abi,
        }
    }

    #[test]
    fn older_abis_cannot_run_it_equal_and_newer_can_unknown_apart() {
        let selected: Vec<Device> = [None, Some(1), Some(1), Some(2), Some(3), None, Some(-1)]
            .into_iter()
            .map(device)
            .collect();
        assert_eq!(
            count(2, &selected),
            Compatibility {
                required_abi: 2,
                too_old: 3,
                unknown: 2
            }
        );
        assert_eq!(
            count(1, &selected),
            Compatibility {
                required_abi: 1,
                too_old: 1,
                unknown: 2
            }
        );
    }
}
