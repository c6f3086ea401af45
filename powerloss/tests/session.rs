//! The device protocol session against a scripted server session, in memory, with the clock
//! jumped: every command, lost answers, duplicate deliveries. Every message crosses as bytes
//! (DeviceFrame / ServerFrame), so both directions of the codec are in the loop.

use agent::{Agent, Next, Outgoing, Session};
use artifact::{ComponentKind, Version};
use protocol::{BootStatus, Command, DeviceFrame, Firmware, RevertReason, ServerFrame, Step};
use testkit::device::*;
use testkit::keys::trust_root as root;
use testkit::release::*;
use testkit::server::Scripted;

/// The scripted server (`testkit::server`); a session sends no `Hello` (only serial links open
/// with one), which `run` checks.
type Server = Scripted;

/// Runs the session until `done` or `limit` exchanges; the clock jumps to each wake-up.
/// Returns the platform actions seen (validation and switches are carried out here).
fn run(
    session: &mut Session<'_, Flash>,
    flash: &bootloader::SharedFlash<Flash>,
    server: &mut Server,
    now: &mut u64,
    limit: usize,
    done: impl Fn(&Server) -> bool,
) -> Vec<Next> {
    let mut actions = vec![];
    for _ in 0..limit {
        if done(server) {
            break;
        }
        if let Some(action) = session.take_action() {
            actions.push(action);
            if action == Next::Validate {
                let agent = session.agent();
                let region = agent.region(agent.inactive_slot());
                let slot = flash.lock(|f| {
                    f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec()
                });
                let size = model_size(server.offer.as_ref().expect("offer"));
                let mut arena = vec![0u8; 64 * 1024];
                let result = session
                    .agent()
                    .validate(&slot, &mut arena, clock_for(&slot, size));
                let _ = session.after_action(result);
            }
            continue;
        }
        let mut frame = vec![0u8; 8192];
        let n = match session.poll_transmit(*now) {
            Some(Outgoing::CheckIn(c)) => DeviceFrame::CheckIn(c).encode(&mut frame),
            Some(Outgoing::ChunkRequest(r)) => DeviceFrame::ChunkRequest(r).encode(&mut frame),
            Some(Outgoing::Report(r)) => DeviceFrame::Report(r).encode(&mut frame),
            None => {
                *now = session.next_wake_ms().max(*now + 1);
                continue;
            }
        }
        .expect("encode");
        if let Some(reply) = server.answer(&frame[..n]) {
            let reply = ServerFrame::decode(&reply).expect("server frame");
            let _ = session.handle(&reply, *now);
        }
    }
    assert!(server.hellos.is_empty(), "a session sends no Hello");
    actions
}

fn session<'f>(flash: &'f bootloader::SharedFlash<Flash>) -> Session<'f, Flash> {
    let agent = Agent::open(flash, LAYOUT, root(), identity()).unwrap();
    Session::new(
        agent,
        Firmware {
            version: Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        1,
        0,
    )
}

#[test]
fn a_model_rolls_out_over_the_protocol_and_each_step_is_reported_once() {
    let flash = new_flash();
    let mut s = session(&flash);
    let mut server = Server::new(Some(release(
        7,
        "good",
        Version::new(1, 0, 0),
        1,
        "mps2-an386",
    )));
    let mut now = 0;
    let actions = run(&mut s, &flash, &mut server, &mut now, 500, |sv| {
        sv.last_model == Some(Version::new(1, 0, 0))
    });
    assert_eq!(
        actions,
        vec![Next::Validate, Next::Switched(protocol::ModelSlot::A)]
    );
    let steps = server.steps();
    assert!(
        matches!(steps.as_slice(), [Step::Downloaded, Step::Validated(f), Step::Confirmed] if f.accuracy_bp == 9_277),
        "{steps:?}"
    );
    assert_eq!(s.agent().active().unwrap().name(), "digits");
    // Nothing new: the device idles and checks in again 300 s later, not before.
    let before = server.check_ins;
    run(&mut s, &flash, &mut server, &mut now, 50, |_| false);
    assert!(server.check_ins > before);
    let t = now;
    let _ = s.poll_transmit(t);
    assert!(s.next_wake_ms() >= t, "a wake-up in the future");
}

#[test]
fn lost_answers_are_retried_and_reports_count_once() {
    let flash = new_flash();
    let mut s = session(&flash);
    let mut server = Server::new(Some(release(
        8,
        "good",
        Version::new(1, 0, 0),
        1,
        "mps2-an386",
    )));
    server.drop_every = 4;
    let mut now = 0;
    run(&mut s, &flash, &mut server, &mut now, 2_000, |sv| {
        sv.last_model == Some(Version::new(1, 0, 0))
    });
    assert_eq!(server.last_model, Some(Version::new(1, 0, 0)));
    let steps = server.steps();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(now >= agent::TIMEOUT_MS, "time passed for the retries");
}

#[test]
fn a_regressed_model_is_refused_reported_and_the_device_stays() {
    let flash = new_flash();
    let mut s = session(&flash);
    let mut server = Server::new(Some(release(
        1,
        "good",
        Version::new(1, 0, 0),
        1,
        "mps2-an386",
    )));
    let mut now = 0;
    run(&mut s, &flash, &mut server, &mut now, 500, |sv| {
        sv.last_model == Some(Version::new(1, 0, 0))
    });
    server.offer = Some(release(
        2,
        "regressed",
        Version::new(2, 0, 0),
        2,
        "mps2-an386",
    ));
    run(&mut s, &flash, &mut server, &mut now, 800, |sv| {
        sv.failed(2) && sv.reports.len() >= 6
    });
    let last: Vec<Step> = server
        .reports
        .values()
        .filter(|(r, _)| *r == 2)
        .map(|(_, s)| *s)
        .collect();
    assert!(
        matches!(
            last.as_slice(),
            [
                Step::Downloaded,
                Step::Validated(_),
                Step::Reverted(RevertReason::Accuracy)
            ]
        ),
        "{last:?}"
    );
    run(&mut s, &flash, &mut server, &mut now, 50, |_| false);
    assert_eq!(
        server.last_model,
        Some(Version::new(1, 0, 0)),
        "never switched, not offered again"
    );
}

#[test]
fn revert_and_reboot_commands() {
    let flash = new_flash();
    let mut s = session(&flash);
    let mut server = Server::new(Some(release(
        1,
        "good",
        Version::new(1, 0, 0),
        1,
        "mps2-an386",
    )));
    let mut now = 0;
    run(&mut s, &flash, &mut server, &mut now, 500, |sv| {
        sv.last_model == Some(Version::new(1, 0, 0))
    });
    server.offer = Some(release(
        2,
        "per_tensor",
        Version::new(1, 1, 0),
        2,
        "mps2-an386",
    ));
    run(&mut s, &flash, &mut server, &mut now, 800, |sv| {
        sv.last_model == Some(Version::new(1, 1, 0))
    });
    // The rollout of 1.1.0 is rolled back: the device goes back to 1.0.0, in the other slot.
    server.offer = None;
    server.queued.push(Command::Revert {
        component: ComponentKind::Model,
    });
    let actions = run(&mut s, &flash, &mut server, &mut now, 200, |sv| {
        sv.last_model == Some(Version::new(1, 0, 0))
    });
    assert_eq!(actions, vec![Next::Switched(protocol::ModelSlot::A)]);
    assert!(
        server
            .steps()
            .contains(&Step::Reverted(RevertReason::Requested))
    );
    server.queued.push(Command::Reboot);
    let actions = run(&mut s, &flash, &mut server, &mut now, 50, |_| false);
    assert_eq!(actions, vec![Next::Reboot]);
}

#[test]
fn check_in_now_brings_the_check_in_forward_and_never_doubles_one_in_flight() {
    let flash = new_flash();
    let mut s = session(&flash);
    let mut server = Server::new(None);
    let mut now = 0;
    // Idle: the server said 300 s.
    run(&mut s, &flash, &mut server, &mut now, 5, |sv| {
        sv.check_ins == 1
    });
    let idle_until = s.next_wake_ms();
    assert_eq!(idle_until, now + 300_000);
    assert!(s.poll_transmit(now + 1_000).is_none(), "not due yet");
    // A gateway's long-poll saw a command: the next check-in goes at once, not in 300 s.
    s.handle(&ServerFrame::CheckInNow, now + 1_000).unwrap();
    assert_eq!(s.next_wake_ms(), now + 1_000);
    assert!(matches!(
        s.poll_transmit(now + 1_000),
        Some(Outgoing::CheckIn(_))
    ));
    // With that check-in in flight, a second wake changes nothing: its answer is awaited (one
    // request at a time, so the command is not fetched, nor applied, twice).
    s.handle(&ServerFrame::CheckInNow, now + 1_001).unwrap();
    assert_eq!(s.next_wake_ms(), now + 1_000 + agent::TIMEOUT_MS);
    assert!(s.poll_transmit(now + 1_002).is_none());
    s.handle(
        &ServerFrame::Command(Command::Idle { poll_after_s: 300 }),
        now + 1_010,
    )
    .unwrap();
    assert_eq!(s.next_wake_ms(), now + 1_010 + 300_000);
}
