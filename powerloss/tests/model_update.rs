//! Model updates through the agent core: switch after validation, refusals before the first
//! write, corrupted chunks, failed validations, resets mid-download.

use agent::{Agent, Error, Next};
use artifact::Version;
use powerloss::model_update::*;
use protocol::{Failure, ModelSlot, RevertReason, Step};
use testkit::device::*;
use testkit::keys::trust_root as root;
use testkit::release::*;

fn steps<F: embedded_storage::nor_flash::NorFlash>(agent: &mut Agent<'_, F>) -> Vec<Step> {
    let mut out = vec![];
    while let Some(r) = agent.report() {
        out.push(r.step);
        agent.delivered(r.seq).unwrap();
    }
    out
}

#[test]
fn a_good_model_is_validated_then_switched_to() {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(agent.active(), None);
    let r = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    assert_eq!(
        run_update(&mut agent, &flash, &r).unwrap(),
        Next::Switched(ModelSlot::A)
    );
    let s = steps(&mut agent);
    assert!(
        matches!(s.as_slice(), [Step::Downloaded, Step::Validated(f), Step::Confirmed] if f.accuracy_bp == 9_277 && f.samples == 360)
    );
    assert!(active_is_intact(&agent, &flash));
    // Reopened after a reset, the agent knows its model.
    drop(agent);
    let agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(agent.active().unwrap().accuracy_bp, 9_277);
    assert_eq!(agent.active_slot(), Some(ModelSlot::A));
    // The next update goes to the other slot; the first stays for an instant revert.
    let mut agent = agent;
    let r2 = release(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
    assert_eq!(
        run_update(&mut agent, &flash, &r2).unwrap(),
        Next::Switched(ModelSlot::B)
    );
    assert_eq!(agent.active().unwrap().version, (1, 1, 0));
    assert_eq!(agent.counters().updates, 2);
}

/// The STM32L4R5's flash: 8-byte words programmed once between erases (ECC), which the
/// simulator enforces. The agent's records, reports and removals never program a word twice.
#[test]
fn model_updates_run_on_ecc_flash() {
    use core::cell::RefCell;
    use embassy_sync::blocking_mutex::Mutex;
    let layout = &layout::STM32L4R5;
    let flash = Mutex::new(RefCell::new(
        norsim::NorSim::<8, 4096>::new(layout.flash_size as usize).with_ecc(true),
    ));
    let id = agent::Identity {
        board: layout.board,
        ..identity()
    };
    let mut agent = Agent::open(&flash, layout, root(), id).unwrap();
    let good = release(1, "good", Version::new(1, 0, 0), 1, layout.board);
    assert_eq!(
        run_update(&mut agent, &flash, &good).unwrap(),
        Next::Switched(ModelSlot::A)
    );
    assert!(matches!(
        steps(&mut agent).as_slice(),
        [Step::Downloaded, Step::Validated(_), Step::Confirmed]
    ));
    // A refused one after it: its pending record and reports are removed again.
    let worse = release(2, "regressed", Version::new(1, 1, 0), 2, layout.board);
    assert_eq!(run_update(&mut agent, &flash, &worse).unwrap(), Next::Idle);
    assert!(matches!(
        steps(&mut agent).as_slice(),
        [
            Step::Downloaded,
            Step::Validated(_),
            Step::Reverted(RevertReason::Accuracy)
        ]
    ));
    drop(agent);
    let agent = Agent::open(&flash, layout, root(), id).unwrap();
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
    assert_eq!(agent.progress(), None);
    assert!(active_is_intact(&agent, &flash));
}

#[test]
fn a_less_accurate_model_is_never_switched_to() {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    let bad = release(2, "regressed", Version::new(1, 1, 0), 2, "mps2-an386");
    assert_eq!(run_update(&mut agent, &flash, &bad).unwrap(), Next::Idle);
    let s = steps(&mut agent);
    assert!(
        matches!(s.as_slice(), [Step::Downloaded, Step::Validated(f), Step::Reverted(RevertReason::Accuracy)] if f.accuracy_bp == 5_972)
    );
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
    assert_eq!(agent.active_slot(), Some(ModelSlot::A));
    assert!(active_is_intact(&agent, &flash));
}

#[test]
fn a_slow_model_is_never_switched_to() {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    let slow = release(2, "slow", Version::new(2, 0, 0), 2, "mps2-an386");
    assert_eq!(run_update(&mut agent, &flash, &slow).unwrap(), Next::Idle);
    let s = steps(&mut agent);
    assert!(
        matches!(s.as_slice(), [Step::Downloaded, Step::Validated(f), Step::Reverted(RevertReason::Latency)] if f.p99_us > 10_000)
    );
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
}

#[test]
fn refused_releases_write_nothing_to_the_model_slots() {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 5, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    let slot_b = || {
        flash.lock(|f| {
            f.borrow().bytes()[LAYOUT.model_b.offset as usize..LAYOUT.model_b.end() as usize]
                .to_vec()
        })
    };
    let before = slot_b();
    let mut tampered = release(2, "per_tensor", Version::new(1, 1, 0), 6, "mps2-an386");
    let n = tampered.envelope.len();
    tampered.envelope[n - 1] ^= 1;
    let cases = [
        (tampered, artifact::Error::BadSignature),
        (
            release(3, "per_tensor", Version::new(1, 1, 0), 6, "nrf52840-dk"),
            artifact::Error::WrongBoard,
        ),
        (
            release(4, "per_tensor", Version::new(1, 1, 0), 4, "mps2-an386"),
            artifact::Error::SecurityCounter,
        ),
    ];
    for (r, why) in cases {
        assert_eq!(agent.on_command(&command(&r)), Err(Error::Refused(why)));
        assert_eq!(
            steps(&mut agent),
            vec![Step::Failed(Failure::Manifest(why))]
        );
        assert_eq!(slot_b(), before, "the inactive slot was touched");
        assert_eq!(agent.progress(), None);
    }
}

#[test]
fn a_corrupted_chunk_is_caught_before_commit() {
    let flash = new_flash();
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    let mut r = release(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
    r.payload[3000] ^= 0x40; // inside the model
    assert_eq!(run_update(&mut agent, &flash, &r), Err(Error::Digest));
    assert_eq!(steps(&mut agent), vec![Step::Failed(Failure::Digest)]);
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
    assert_eq!(agent.progress(), None);
    // The same release, delivered cleanly, then installs.
    let clean = release(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
    assert_eq!(
        run_update(&mut agent, &flash, &clean).unwrap(),
        Next::Switched(ModelSlot::B)
    );
}

#[test]
fn undelivered_reports_survive_a_reset() {
    let flash = new_flash();
    {
        let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
        run_update(
            &mut agent,
            &flash,
            &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
        )
        .unwrap();
        let first = agent.report().unwrap();
        assert_eq!(first.step, Step::Downloaded);
        agent.delivered(first.seq).unwrap();
        // Validated and Confirmed are not delivered when the device resets.
    }
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    let s = steps(&mut agent);
    assert!(
        matches!(s.as_slice(), [Step::Validated(_), Step::Confirmed]),
        "{s:?}"
    );
    let agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    assert_eq!(agent.report(), None, "delivered reports stay delivered");
    let r = agent.message(&agent::PendingReport {
        seq: 9,
        release: 1,
        component: artifact::ComponentKind::Model,
        version: Version::new(1, 0, 0),
        step: Step::Confirmed,
    });
    assert_eq!(r.device_id, "node-1");
}

#[test]
fn a_reset_mid_download_resumes_at_the_last_sector() {
    let flash = new_flash();
    let r = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    {
        let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
        let mut next = agent.on_command(&command(&r)).unwrap();
        // 10 chunks of 1 KiB, then the device resets.
        for _ in 0..10 {
            let Next::Fetch(req) = next else {
                panic!("{next:?}")
            };
            next = agent
                .on_chunk(
                    req.release,
                    req.offset,
                    &r.payload[req.offset as usize..(req.offset + req.len) as usize],
                )
                .unwrap();
        }
    }
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity()).unwrap();
    let p = agent.progress().unwrap();
    assert_eq!(
        (p.release, p.offset, p.total),
        (1, 8192, r.payload.len() as u32)
    );
    // The server repeats the command; the agent asks for what it lacks.
    match agent.on_command(&command(&r)).unwrap() {
        Next::Fetch(req) => assert_eq!(req.offset, 8192),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run_update(&mut agent, &flash, &r).unwrap(),
        Next::Switched(ModelSlot::A)
    );
}

/// The bytes of both model slots.
fn model_slots(flash: &bootloader::SharedFlash<Flash>) -> Vec<u8> {
    flash.lock(|f| {
        let b = f.borrow();
        let bytes = b.bytes();
        let (a, bb) = (LAYOUT.model_a, LAYOUT.model_b);
        [
            &bytes[a.offset as usize..a.end() as usize],
            &bytes[bb.offset as usize..bb.end() as usize],
        ]
        .concat()
    })
}

#[test]
fn old_firmware_refuses_a_model_needing_a_later_runtime_abi_before_writing() {
    let flash = new_flash();
    let identity = identity_on_abi(OLD_RUNTIME_ABI);
    let mut agent = Agent::open(&flash, LAYOUT, root(), identity).unwrap();
    run_update(
        &mut agent,
        &flash,
        &release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386"),
    )
    .unwrap();
    steps(&mut agent);
    let before = model_slots(&flash);
    let needs_2 = release_requiring(2, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386", 2);
    assert_eq!(
        agent.on_command(&command(&needs_2)),
        Err(Error::Refused(artifact::Error::AbiMismatch))
    );
    // Its own failure code on the wire (decoded as the server does), named abi_mismatch.
    let r = agent.report().unwrap();
    let wire = protocol::to_vec(&agent.message(&r));
    let sent: protocol::Report<'_> = protocol::decode(&wire).unwrap();
    assert_eq!(
        (sent.release, sent.version, sent.step),
        (
            2,
            Version::new(1, 1, 0),
            Step::Failed(Failure::Manifest(artifact::Error::AbiMismatch))
        )
    );
    assert_eq!(artifact::Error::AbiMismatch.code(), "abi_mismatch");
    agent.delivered(r.seq).unwrap();
    assert_eq!(agent.report(), None);
    assert!(model_slots(&flash) == before, "a model slot was touched");
    assert_eq!(agent.progress(), None);
    assert_eq!(agent.active().unwrap().version, (1, 0, 0));
    assert_eq!(agent.active_slot(), Some(ModelSlot::A));
    // Nothing of it survives a reset either.
    drop(agent);
    let agent = Agent::open(&flash, LAYOUT, root(), identity).unwrap();
    assert_eq!(agent.progress(), None);
    assert!(model_slots(&flash) == before);
}

#[test]
fn a_model_runs_on_firmware_of_its_runtime_abi_or_a_later_one() {
    // (firmware's ABI, model's required ABI): older firmware refuses, equal and newer switch.
    for (provided, needed, switched) in [(1, 2, false), (2, 2, true), (3, 2, true), (2, 1, true)] {
        let flash = new_flash();
        let mut agent = Agent::open(&flash, LAYOUT, root(), identity_on_abi(provided)).unwrap();
        let r = release_requiring(1, "good", Version::new(1, 0, 0), 1, "mps2-an386", needed);
        let outcome = run_update(&mut agent, &flash, &r);
        if switched {
            assert_eq!(
                outcome,
                Ok(Next::Switched(ModelSlot::A)),
                "{provided} {needed}"
            );
        } else {
            assert_eq!(
                outcome,
                Err(Error::Refused(artifact::Error::AbiMismatch)),
                "{provided} {needed}"
            );
            assert_eq!(agent.active(), None);
        }
    }
}
