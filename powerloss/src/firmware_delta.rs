//! The firmware download as a delta under power cuts (`firmware-update-delta...` scenarios of
//! powerloss.json): a device running a signed image gets the next one as a delta from it,
//! applied from the active slot into the DFU slot, and the power is cut (or the operation torn)
//! at every flash operation of the download. After each fault the device restarts: the running
//! image must still verify, the server repeats the command, and the device must end with the
//! new image in the DFU slot, verified and marked for swap; a corrupted delta must end with
//! nothing marked for swap.

use crate::ScenarioResult;
use crate::device::Device;
use crate::model_update::{Wire, answer, command_via, open_with_decoder, run_update};
use agent::Next;
use artifact::Version;
use bootloader::Outcome;
use norsim::{Fault, FaultKind};
use testkit::device::LAYOUT;
use testkit::image::signed_payload;
use testkit::release::{Release, firmware_release, release};

type Dev = Device<4, 4096>;

/// Firmware 1.0.0: code-like bytes, so the delta to 2.0.0 is a real one.
pub fn old_image() -> Vec<u8> {
    (0..24_000u32)
        .map(|i| ((i / 2) as u8).wrapping_mul(13) ^ ((i % 2) as u8 * 0x40))
        .collect()
}

/// Firmware 2.0.0: 1.0.0 with a function's worth of bytes inserted and a few changed.
pub fn new_image() -> Vec<u8> {
    let mut img = old_image();
    img.splice(9_000..9_000, (0..240u32).map(|i| (i * 31) as u8));
    for b in &mut img[20_000..20_016] {
        *b ^= 0x5A;
    }
    img
}

/// A device running 1.0.0 (confirmed) with the `good` model, and the 2.0.0 release.
fn device() -> (Dev, Release) {
    let installed = signed_payload(LAYOUT, Version::new(1, 0, 0), 1, &old_image());
    let d = Dev::new(*LAYOUT, &installed, false);
    assert_eq!(d.boot().map(|b| b.outcome), Ok(Outcome::Confirmed));
    {
        let mut agent = open_with_decoder(&d.flash).expect("open");
        run_update(
            &mut agent,
            &d.flash,
            &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
        )
        .expect("model");
        while let Some(r) = agent.report() {
            agent.delivered(r.seq).expect("delivered");
        }
    }
    (
        d,
        firmware_release(10, Version::new(2, 0, 0), 2, &new_image()),
    )
}

/// The download to its end (the agent asks for a reboot) or the first error.
pub fn download(d: &Dev, fw: &Release, wire: &Wire) -> Result<Next, agent::Error> {
    let mut agent = open_with_decoder(&d.flash)?;
    let mut next = agent.on_command(&command_via(fw, wire))?;
    while let Next::Fetch(req) = next {
        next = answer(&mut agent, fw, wire, req)?;
    }
    Ok(next)
}

/// The matrix: `corrupt` flips a byte in the middle of the delta. The download must then fail
/// and leave nothing marked for swap, unless a cut while it was being abandoned left the
/// update pending without its stream: then the device takes the rest as plain payloads after
/// the blocks it decoded (before the damage), and the image it marks is the verified 2.0.0
/// (the bootloader verifies before it swaps, so a trial of 2.0.0 is the signed image).
pub fn matrix(name: &str, corrupt: bool) -> ScenarioResult {
    let (installed, fw) = device();
    let mut wire = Wire::delta(&old_image(), &fw);
    if corrupt {
        if let Wire::Stream { bytes, .. } = &mut wire {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x10;
        }
    }
    let probe = installed.clone();
    let before = probe.ops();
    let fault_free = download(&probe, &fw, &wire);
    let ops = probe.ops() - before;
    let mut result = ScenarioResult {
        name: name.into(),
        geometry: "mps2-an386 layout, 4KiB/4B".into(),
        cut_points: 0,
        failures: 0,
        first_failure: None,
        known_limitation: false,
    };
    // Without a fault: the delta applies, the corrupted one is refused.
    if fault_free.is_ok() == corrupt {
        result.failures += 1;
        result.first_failure = Some(format!("without a fault: {fault_free:?}"));
    }
    for k in 0..ops {
        for kind in [FaultKind::Cut, FaultKind::Tear] {
            let d = installed.clone();
            d.with_flash(|f| {
                *f = f.clone().with_seed(k * 2 + kind as u64 + 1);
                f.power_on();
            });
            let outcome = (|| -> Result<(), String> {
                d.plan(Fault { at: k, kind });
                let _ = download(&d, &fw, &wire);
                d.power_on();
                // The reset after the cut: the bootloader runs, the agent restarts, and the
                // server repeats its command until the device reports the outcome.
                let first = d.boot().map_err(|e| format!("boot after the cut: {e:?}"))?;
                let staged = first.image.version == Version::new(2, 0, 0);
                if first.image.version != Version::new(1, 0, 0) && !staged {
                    return Err(format!("booted {:?}", first.image.version));
                }
                if staged {
                    // The cut came after the image was marked for swap: it is now on trial.
                    return if first.outcome == Outcome::Trial {
                        Ok(())
                    } else {
                        Err(format!("new image booted as {:?}", first.outcome))
                    };
                }
                let end = download(&d, &fw, &wire);
                let boot = d.boot().map_err(|e| format!("boot: {e:?}"))?;
                match (corrupt, end, boot.outcome, boot.image.version) {
                    (false, Ok(Next::Reboot), Outcome::Trial, v) if v == Version::new(2, 0, 0) => {
                        Ok(())
                    }
                    (true, Err(_), Outcome::Confirmed, v) if v == Version::new(1, 0, 0) => Ok(()),
                    (true, Ok(Next::Reboot), Outcome::Trial, v) if v == Version::new(2, 0, 0) => {
                        Ok(())
                    }
                    // Refused again at the repeat: the update was abandoned before the cut.
                    (true, Ok(Next::Idle), Outcome::Confirmed, v) if v == Version::new(1, 0, 0) => {
                        Ok(())
                    }
                    (_, end, outcome, v) => Err(format!("ended {end:?}, booted {v:?} {outcome:?}")),
                }
            })();
            result.record(format_args!("{kind:?} at operation {k}"), outcome);
        }
    }
    result
}
