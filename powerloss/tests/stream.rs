//! Updates whose payloads come as a delta or compressed stream, through the real agent on a
//! simulated device: what it fetches, a base it does not hold, a stream that does not decode,
//! a reset in the middle, and a firmware delta through to the bootloader's trial boot.

use agent::{Error, Next};
use artifact::Version;
use bootloader::Outcome;
use powerloss::firmware_delta;
use powerloss::model_update::*;
use protocol::{Failure, Step};
use testkit::device::*;
use testkit::release::*;

fn installed() -> (SharedFlashBox, Release, Release) {
    let flash = new_flash();
    let old = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let new = release(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
    {
        let mut agent = open_with_decoder(&flash).unwrap();
        run_update(&mut agent, &flash, &old).unwrap();
        while let Some(r) = agent.report() {
            agent.delivered(r.seq).unwrap();
        }
    }
    (flash, old, new)
}

type SharedFlashBox = bootloader::SharedFlash<Flash>;

fn steps(agent: &mut agent::Agent<'_, Flash>) -> Vec<Step> {
    let mut out = vec![];
    while let Some(r) = agent.report() {
        out.push(r.step);
        agent.delivered(r.seq).unwrap();
    }
    out
}

/// Drives the update, counting the bytes fetched plain and from the stream.
fn drive(
    agent: &mut agent::Agent<'_, Flash>,
    flash: &SharedFlashBox,
    r: &Release,
    wire: &Wire,
) -> (Result<Next, Error>, usize, usize) {
    let (mut plain, mut stream) = (0, 0);
    let mut next = agent.on_command(&command_via(r, wire));
    while let Ok(Next::Fetch(req)) = next {
        match req.stream {
            Some(_) => stream += req.len as usize,
            None => plain += req.len as usize,
        }
        next = answer(agent, r, wire, req);
    }
    if let Ok(Next::Validate) = next {
        let region = agent.region(agent.inactive_slot());
        let slot = flash
            .lock(|f| f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec());
        let mut arena = vec![0u8; 64 * 1024];
        next = agent.validate(&slot, &mut arena, clock_for(&slot, model_size(r)));
    }
    (next, plain, stream)
}

#[test]
fn a_model_delta_is_fetched_instead_of_the_payloads_and_switched_to() {
    let (flash, old, new) = installed();
    let wire = Wire::delta(&old.payload, &new);
    let Wire::Stream { bytes, .. } = &wire else {
        unreachable!()
    };
    let mut agent = open_with_decoder(&flash).unwrap();
    let (next, plain, stream) = drive(&mut agent, &flash, &new, &wire);
    assert!(matches!(next, Ok(Next::Switched(_))), "{next:?}");
    assert_eq!((plain, stream), (0, bytes.len()));
    assert!(
        bytes.len() < new.payload.len() / 2,
        "{} of {}",
        bytes.len(),
        new.payload.len()
    );
    assert_eq!(agent.active().unwrap().version, (1, 1, 0));
    assert!(active_is_intact(&agent, &flash));
    assert_eq!(steps(&mut agent)[0], Step::Downloaded);
}

#[test]
fn a_compressed_model_is_fetched_compressed() {
    let (flash, _, new) = installed();
    let wire = Wire::compressed(&new);
    let Wire::Stream { bytes, .. } = &wire else {
        unreachable!()
    };
    let mut agent = open_with_decoder(&flash).unwrap();
    let (next, plain, stream) = drive(&mut agent, &flash, &new, &wire);
    assert!(matches!(next, Ok(Next::Switched(_))), "{next:?}");
    assert_eq!((plain, stream), (0, bytes.len()));
    assert!(active_is_intact(&agent, &flash));
}

#[test]
fn a_delta_from_another_base_is_declined_and_the_payloads_fetched() {
    let (flash, _, new) = installed();
    // A delta from a model this device does not run.
    let other = release(3, "regressed", Version::new(0, 9, 0), 1, "mps2-an386");
    let wire = Wire::delta(&other.payload, &new);
    let mut agent = open_with_decoder(&flash).unwrap();
    let (next, plain, stream) = drive(&mut agent, &flash, &new, &wire);
    assert!(matches!(next, Ok(Next::Switched(_))), "{next:?}");
    assert_eq!((plain, stream), (new.payload.len(), 0));
}

#[test]
fn an_agent_without_a_decoder_fetches_the_payloads() {
    let (flash, old, new) = installed();
    let wire = Wire::delta(&old.payload, &new);
    let mut agent =
        agent::Agent::open(&flash, LAYOUT, testkit::keys::trust_root(), identity()).unwrap();
    assert!(!agent.accepts_streams());
    let (next, plain, stream) = drive(&mut agent, &flash, &new, &wire);
    assert!(matches!(next, Ok(Next::Switched(_))), "{next:?}");
    assert_eq!((plain, stream), (new.payload.len(), 0));
}

#[test]
fn a_stream_that_does_not_decode_abandons_the_update_with_a_report() {
    let (flash, old, new) = installed();
    let mut wire = Wire::delta(&old.payload, &new);
    if let Wire::Stream { bytes, .. } = &mut wire {
        bytes[0] = b'X'; // not a stream
    }
    let mut agent = open_with_decoder(&flash).unwrap();
    let (next, _, _) = drive(&mut agent, &flash, &new, &wire);
    assert_eq!(next, Err(Error::Stream(delta::FormatError::BadMagic)));
    assert_eq!(steps(&mut agent), vec![Step::Failed(Failure::Download)]);
    assert_eq!(agent.progress(), None);
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
    assert!(active_is_intact(&agent, &flash));
}

#[test]
fn a_stream_that_decodes_to_other_bytes_fails_on_the_digest() {
    let (flash, old, new) = installed();
    // A well-formed delta to another target of the same length.
    let mut other = new.payload.clone();
    other[100] ^= 1;
    let wire = Wire::Stream {
        bytes: delta::encode::delta(&old.payload, &other).unwrap(),
        base_sha256: Some(artifact::sha256(&old.payload)),
    };
    let mut agent = open_with_decoder(&flash).unwrap();
    let (next, _, _) = drive(&mut agent, &flash, &new, &wire);
    assert_eq!(next, Err(Error::Digest));
    assert_eq!(steps(&mut agent), vec![Step::Failed(Failure::Digest)]);
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
}

#[test]
fn a_reset_in_the_middle_resumes_the_stream_at_a_block() {
    let (flash, _, _) = installed();
    // A larger target, so the stream has several blocks: the slow fixture.
    let big = release(4, "slow", Version::new(2, 0, 0), 3, "mps2-an386");
    let wire = Wire::compressed(&big);
    let Wire::Stream { bytes, .. } = &wire else {
        unreachable!()
    };
    let mut resumed_at = None;
    {
        let mut agent = open_with_decoder(&flash).unwrap();
        let mut next = agent.on_command(&command_via(&big, &wire)).unwrap();
        let mut fetched = 0;
        while let Next::Fetch(req) = next {
            next = answer(&mut agent, &big, &wire, req).unwrap();
            fetched += req.len as usize;
            if fetched > bytes.len() * 2 / 3 {
                break; // the reset
            }
        }
    }
    let mut agent = open_with_decoder(&flash).unwrap();
    let progress = agent.progress().unwrap();
    assert!(progress.offset >= 4096, "persisted {}", progress.offset);
    let mut next = agent.on_command(&command_via(&big, &wire)).unwrap();
    if let Next::Fetch(req) = next {
        assert_eq!(req.stream, Some(77));
        resumed_at = Some(req.offset);
    }
    let at = resumed_at.unwrap();
    assert!(
        at > 80 && (at as usize) < bytes.len() * 2 / 3,
        "resumed at {at}"
    );
    while let Next::Fetch(req) = next {
        next = answer(&mut agent, &big, &wire, req).unwrap();
    }
    assert_eq!(next, Next::Validate);
    let region = agent.region(agent.inactive_slot());
    let slot =
        flash.lock(|f| f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec());
    assert_eq!(&slot[..big.payload.len()], &big.payload[..]);
}

#[test]
fn a_firmware_delta_is_applied_into_the_dfu_slot_and_boots_on_trial() {
    let d = firmware_delta_device();
    let fw = firmware_release(10, Version::new(2, 0, 0), 2, &firmware_delta::new_image());
    let wire = Wire::delta(&firmware_delta::old_image(), &fw);
    let Wire::Stream { bytes, .. } = &wire else {
        unreachable!()
    };
    assert!(
        bytes.len() * 10 < fw.payload.len(),
        "{} of {}",
        bytes.len(),
        fw.payload.len()
    );
    assert_eq!(
        firmware_delta::download(&d, &fw, &wire).unwrap(),
        Next::Reboot
    );
    let boot = d.boot().unwrap();
    assert_eq!(
        (boot.outcome, boot.image.version),
        (Outcome::Trial, Version::new(2, 0, 0))
    );
}

#[test]
fn a_firmware_delta_for_another_image_takes_the_full_image() {
    let d = firmware_delta_device();
    let fw = firmware_release(10, Version::new(2, 0, 0), 2, &firmware_delta::new_image());
    // A delta from an image this device does not run.
    let mut other = firmware_delta::old_image();
    other[5] ^= 1;
    let wire = Wire::delta(&other, &fw);
    let mut agent = open_with_decoder(&d.flash).unwrap();
    let next = agent.on_command(&command_via(&fw, &wire)).unwrap();
    assert!(
        matches!(next, Next::Fetch(r) if r.stream.is_none() && r.offset == 0),
        "{next:?}"
    );
}

fn firmware_delta_device() -> powerloss::device::Device<4, 4096> {
    let installed = testkit::image::signed_payload(
        LAYOUT,
        Version::new(1, 0, 0),
        1,
        &firmware_delta::old_image(),
    );
    let d = powerloss::device::Device::<4, 4096>::new(*LAYOUT, &installed, false);
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed);
    d
}
