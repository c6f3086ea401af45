//! Firmware updates through the agent and the real bootloader core on one simulated flash:
//! download to the DFU slot, swap, validation of the running model under the new firmware,
//! confirm, and every way back.

use agent::{Agent, Error, Next};
use artifact::Version;
use bootloader::Outcome;
use powerloss::device::Device;
use powerloss::model_update::*;
use protocol::{BootStatus, Failure, RevertReason, Step};
use testkit::device::*;
use testkit::image::signed_payload;
use testkit::keys::trust_root as root;
use testkit::release::*;

fn steps(agent: &mut Agent<'_, Flash>) -> Vec<Step> {
    let mut out = vec![];
    while let Some(r) = agent.report() {
        out.push(r.step);
        agent.delivered(r.seq).unwrap();
    }
    out
}

fn image(seed: u8) -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// A device running firmware 1.0.0 (counter 1), confirmed, with the `good` model installed.
fn device() -> Device<4, 4096> {
    let installed = signed_payload(LAYOUT, Version::new(1, 0, 0), 1, &image(1));
    let d = Device::<4, 4096>::new(*LAYOUT, &installed, false);
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed);
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
    run_update(
        &mut agent,
        &d.flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    d
}

fn check_firmware(
    agent: &mut Agent<'_, Flash>,
    d: &Device<4, 4096>,
    slowdown: u64,
) -> Result<Next, Error> {
    let slot = active_slot_bytes(agent, &d.flash);
    let size = agent.active().unwrap().model_size as usize;
    let mut arena = vec![0u8; 64 * 1024];
    agent.confirm_firmware(&slot, &mut arena, slowed_clock(&slot, size, slowdown))
}

#[test]
fn a_good_firmware_swaps_validates_and_is_confirmed() {
    let d = device();
    let fw = firmware_release(10, Version::new(2, 0, 0), 2, &image(2));
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        assert_eq!(download_firmware(&mut agent, &fw).unwrap(), Next::Reboot);
        assert_eq!(steps(&mut agent), vec![Step::Downloaded, Step::Installed]);
    }
    let boot = d.boot().unwrap();
    assert_eq!(
        (boot.outcome, boot.image.version),
        (Outcome::Trial, Version::new(2, 0, 0))
    );
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(
        agent
            .after_boot(BootStatus::Trial, Version::new(2, 0, 0))
            .unwrap(),
        Next::CheckFirmware
    );
    assert_eq!(check_firmware(&mut agent, &d, 1).unwrap(), Next::Idle);
    let s = steps(&mut agent);
    assert!(
        matches!(s.as_slice(), [Step::Booted, Step::Validated(f), Step::Confirmed] if f.accuracy_bp == 9_277),
        "{s:?}"
    );
    let boot = d.boot().unwrap();
    assert_eq!(
        (boot.outcome, boot.image.version),
        (Outcome::Confirmed, Version::new(2, 0, 0))
    );
}

#[test]
fn a_firmware_that_slows_the_model_is_not_confirmed_and_is_reverted() {
    let d = device();
    let fw = firmware_release(11, Version::new(2, 0, 0), 2, &image(3));
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        download_firmware(&mut agent, &fw).unwrap();
        steps(&mut agent);
    }
    assert_eq!(d.boot().unwrap().outcome, Outcome::Trial);
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        agent
            .after_boot(BootStatus::Trial, Version::new(2, 0, 0))
            .unwrap();
        // Ten times slower under the new firmware: p99 over 10 ms.
        assert_eq!(check_firmware(&mut agent, &d, 10).unwrap(), Next::Reboot);
        let s = steps(&mut agent);
        assert!(
            matches!(s.as_slice(), [Step::Booted, Step::Validated(f), Step::Reverted(RevertReason::Latency)] if f.p99_us > 10_000),
            "{s:?}"
        );
    }
    // The reset: the bootloader reverts the unconfirmed trial.
    let back = d.boot().unwrap();
    assert_eq!(
        (back.outcome, back.image.version),
        (Outcome::Reverted, Version::new(1, 0, 0))
    );
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(
        agent
            .after_boot(BootStatus::Reverted, Version::new(1, 0, 0))
            .unwrap(),
        Next::Idle
    );
    assert_eq!(steps(&mut agent), vec![], "the revert was already reported");
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed);
    assert_eq!(agent.counters().reverts, 1);
}

#[test]
fn a_firmware_that_never_confirms_is_reverted_and_the_revert_reported() {
    let d = device();
    let fw = firmware_release(12, Version::new(2, 0, 0), 2, &image(4));
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        download_firmware(&mut agent, &fw).unwrap();
        steps(&mut agent);
    }
    assert_eq!(d.boot().unwrap().outcome, Outcome::Trial);
    // It hangs before the agent runs: the watchdog resets, the bootloader reverts.
    let back = d.boot().unwrap();
    assert_eq!(
        (back.outcome, back.image.version),
        (Outcome::Reverted, Version::new(1, 0, 0))
    );
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(
        agent
            .after_boot(BootStatus::Reverted, Version::new(1, 0, 0))
            .unwrap(),
        Next::Idle
    );
    assert_eq!(
        steps(&mut agent),
        vec![Step::Reverted(RevertReason::NotConfirmed)]
    );
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed);
}

#[test]
fn a_firmware_below_the_bootloaders_counter_is_refused_before_any_write() {
    let d = device();
    // Confirm 2.0.0 with counter 5 first.
    let fw = firmware_release(13, Version::new(2, 0, 0), 5, &image(5));
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        download_firmware(&mut agent, &fw).unwrap();
    }
    d.boot().unwrap();
    {
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
        agent
            .after_boot(BootStatus::Trial, Version::new(2, 0, 0))
            .unwrap();
        check_firmware(&mut agent, &d, 1).unwrap();
    }
    assert_eq!(d.boot().unwrap().image.security_counter, 5);
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity()).unwrap();
    steps(&mut agent);
    let dfu = |d: &Device<4, 4096>| {
        d.with_flash(|f| f.bytes()[LAYOUT.dfu.offset as usize..LAYOUT.dfu.end() as usize].to_vec())
    };
    let before = dfu(&d);
    let old = firmware_release(14, Version::new(3, 0, 0), 4, &image(6));
    assert_eq!(
        agent.on_command(&command(&old)),
        Err(Error::Refused(artifact::Error::SecurityCounter))
    );
    assert_eq!(
        steps(&mut agent),
        vec![Step::Failed(Failure::Manifest(
            artifact::Error::SecurityCounter
        ))]
    );
    assert_eq!(dfu(&d), before, "nothing written to the DFU slot");
}

#[test]
fn a_firmware_of_an_older_runtime_abi_than_the_running_one_is_refused_before_any_write() {
    // The device runs ABI 2 with a model active; firmware offering ABI 1, 2 and 3 in turn.
    let d = device();
    let dfu = |d: &Device<4, 4096>| {
        d.with_flash(|f| f.bytes()[LAYOUT.dfu.offset as usize..LAYOUT.dfu.end() as usize].to_vec())
    };
    let before = dfu(&d);
    let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity_on_abi(2)).unwrap();
    let older = firmware_release_on_abi(20, Version::new(2, 0, 0), 2, &image(7), 1);
    assert_eq!(
        agent.on_command(&command(&older)),
        Err(Error::Refused(artifact::Error::AbiMismatch))
    );
    assert_eq!(
        steps(&mut agent),
        vec![Step::Failed(Failure::Manifest(
            artifact::Error::AbiMismatch
        ))]
    );
    assert_eq!(dfu(&d), before, "nothing written to the DFU slot");
    assert_eq!(agent.progress(), None);
    for (id, abi) in [(21, 2), (22, 3)] {
        let d = device();
        let mut agent = Agent::open(&d.flash, LAYOUT, root(), identity_on_abi(2)).unwrap();
        let fw = firmware_release_on_abi(id, Version::new(2, 0, 0), 2, &image(8), abi);
        assert_eq!(
            download_firmware(&mut agent, &fw),
            Ok(Next::Reboot),
            "ABI {abi}"
        );
        assert_eq!(steps(&mut agent), vec![Step::Downloaded, Step::Installed]);
    }
}
