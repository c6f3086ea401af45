//! The device library on a host board (`powerloss::host_board`) against the scripted server,
//! every byte through the link framing: a model update from check-in to the application
//! running the new model, an identity that is missing or damaged, garbage on the transport.

use artifact::Version;
use device::{Board, Inference};
use embedded_storage::nor_flash::NorFlash;
use powerloss::host_board::{Bench, Ended, TestLine, exchange, provision};
use protocol::Step;
use testkit::device::{LAYOUT, new_flash};
use testkit::release::{model_size, release};
use testkit::server::Scripted;

#[test]
fn a_model_update_reaches_the_application_in_place() {
    let flash = new_flash();
    provision(&flash, "node-7");
    let mut bench = Bench::default();
    let mut dev = bench.device(&flash);
    let mut app = TestLine::default();
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let model_bytes = model_size(&good);
    let mut server = Scripted::new(Some(good));
    let ended = exchange(
        &mut dev,
        &mut app,
        &mut server,
        &[],
        5_000,
        |app, server| {
            app.ran.contains(&1)
                && app.inferences() >= 3
                && server.steps().contains(&Step::Confirmed)
        },
    );
    assert_eq!(ended, Ended::Done);
    // No model at first, then the new one, switched to once and run in place.
    assert_eq!(app.told, vec![None, Some((1, model_bytes))]);
    assert_eq!(app.ran, vec![1]);
    assert!(matches!(
        server.steps().as_slice(),
        [Step::Downloaded, Step::Validated(f), Step::Confirmed] if f.samples > 0
    ));
    assert!(server.hellos.iter().all(|h| h == "node-7") && !server.hellos.is_empty());
    let lines = dev.board().lines.borrow().clone();
    let expected = [
        "agent: up, firmware 1.0.0 confirmed, boot 1, build test",
        "agent: fetching release 1 in full",
        "agent: validating, inferences 0",
        "agent: switched model, inferences 0",
    ];
    assert_eq!(lines[..4], expected);
}

#[test]
fn without_a_good_identity_the_active_model_runs_offline() {
    let flash = new_flash();
    provision(&flash, "node-8");
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    {
        let mut bench = Bench::default();
        let mut dev = bench.device(&flash);
        let mut app = TestLine::default();
        let mut server = Scripted::new(Some(good.clone()));
        let ended = exchange(&mut dev, &mut app, &mut server, &[], 5_000, |app, _| {
            app.ran.contains(&1)
        });
        assert_eq!(ended, Ended::Done);
    }
    // The record damaged (one bit of the credential): after a reset the device says why,
    // sends nothing, and its line runs the model it had.
    flash.lock(|f| {
        let at = LAYOUT.identity.offset as usize + 8 + 6;
        let mut f = f.borrow_mut();
        let word = at / 4 * 4;
        let mut w = f.bytes()[word..word + 4].to_vec();
        w[at - word] &= 0xFE;
        f.write(word as u32, &w).expect("write");
    });
    let mut bench = Bench::default();
    let mut dev = bench.device(&flash);
    let mut app = TestLine::default();
    for _ in 0..20 {
        let wake = dev.poll(&mut app);
        assert_eq!(
            dev.transmit(),
            None,
            "an unprovisioned device sends nothing"
        );
        dev.board().now.set(wake.max(dev.board().now_ms() + 1));
    }
    assert_eq!(app.told, vec![Some((0, model_size(&good)))]);
    assert_eq!(app.ran, vec![0]);
    assert!(app.inferences() >= 3);
    assert_eq!(
        dev.board().lines.borrow()[0],
        "agent: no identity: identity record is damaged (check digest); running the active model offline"
    );
}

#[test]
fn garbage_on_the_link_is_dropped_and_the_update_completes() {
    let flash = new_flash();
    provision(&flash, "node-9");
    let mut bench = Bench::default();
    let mut dev = bench.device(&flash);
    let mut app = TestLine::default();
    let good = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let mut server = Scripted::new(Some(good));
    server.drop_every = 7;
    // Bytes of every value, a frame delimiter among them, before every answer.
    let garbage: Vec<u8> = (0..=255u8).rev().chain([0, 1, 2, 0]).collect();
    let ended = exchange(
        &mut dev,
        &mut app,
        &mut server,
        &garbage,
        20_000,
        |app, s| app.ran.contains(&1) && s.steps().contains(&Step::Confirmed),
    );
    assert_eq!(ended, Ended::Done);
    assert_eq!(
        app.told.last(),
        Some(&Some((1, model_size(&server.offer.clone().unwrap()))))
    );
    assert!(server.steps().contains(&Step::Confirmed));
}
