//! The device library's code path under power cuts (`device-model-update...` scenarios): a
//! device running `good` 1.0.0 on the host board (`host_board`) is offered a new model by
//! the scripted server, through the link framing, and power is cut (or the operation torn) at
//! a flash operation of the update. The device reboots; the model its line runs must be the
//! old or the new one and intact, and the update must then end where a fault-free one ends,
//! with the outcome reported to the same server.

use crate::ScenarioResult;
use crate::host_board::{Bench, Ended, TestLine, exchange, provision};
use crate::model_update::active_is_intact;
use artifact::Version;
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use norsim::{Fault, FaultKind};
use protocol::Step;
use testkit::device::{Flash, new_flash};
use testkit::release::{model_size, release};
use testkit::server::Scripted;

/// Polls allowed for one update to end (the clock jumps, so this is generous).
const POLLS: usize = 20_000;

fn snapshot(f: &SharedFlash<Flash>) -> SharedFlash<Flash> {
    Mutex::new(RefCell::new(f.lock(|c| c.borrow().clone())))
}

/// The server has heard the outcome of release 2, and the line runs the model it should
/// (`to_bytes` long).
fn ended(app: &TestLine, server: &Scripted, to_bytes: usize, expect_switch: bool) -> bool {
    let outcome = server.reports.values().any(|(r, s)| {
        *r == 2
            && match s {
                Step::Confirmed => expect_switch,
                Step::Reverted(_) => !expect_switch,
                _ => false,
            }
    });
    let runs = app.told.last().copied().flatten().map(|(_, n)| n) == Some(to_bytes);
    outcome && runs && !app.ran.is_empty()
}

/// Every `stride`-th flash operation of the update, cut and torn.
pub fn matrix(name: &str, to: &str, expect_switch: bool, stride: u64) -> ScenarioResult {
    let old = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let new = release(2, to, Version::new(1, 1, 0), 2, "mps2-an386");
    let (old_bytes, new_bytes) = (model_size(&old), model_size(&new));
    let installed = new_flash();
    provision(&installed, "node-1");
    {
        let mut bench = Bench::default();
        let mut dev = bench.device(&installed);
        let mut server = Scripted::new(Some(old));
        let ended = exchange(
            &mut dev,
            &mut TestLine::default(),
            &mut server,
            &[],
            POLLS,
            |_, s| s.steps().contains(&Step::Confirmed),
        );
        assert_eq!(ended, Ended::Done, "install the old model");
    }
    let to_bytes = if expect_switch { new_bytes } else { old_bytes };
    let probe = snapshot(&installed);
    let ops = {
        let mut bench = Bench::default();
        let mut dev = bench.device(&probe);
        let mut server = Scripted::new(Some(new.clone()));
        let before = probe.lock(|f| f.borrow().ops());
        let ended = exchange(
            &mut dev,
            &mut TestLine::default(),
            &mut server,
            &[],
            POLLS,
            |a, s| ended(a, s, to_bytes, expect_switch),
        );
        assert_eq!(
            ended,
            Ended::Done,
            "fault-free update: {:?} {:?}",
            server.steps(),
            dev.board().lines.borrow()
        );
        probe.lock(|f| f.borrow().ops()) - before
    };
    let mut result = ScenarioResult {
        name: name.into(),
        geometry: "mps2-an386 layout, 4KiB/4B, device library".into(),
        cut_points: 0,
        failures: 0,
        first_failure: None,
        known_limitation: false,
    };
    for k in (0..ops).step_by(stride.max(1) as usize) {
        for kind in [FaultKind::Cut, FaultKind::Tear] {
            let flash = snapshot(&installed);
            flash.lock(|f| {
                let mut f = f.borrow_mut();
                *f = f.clone().with_seed(k * 2 + kind as u64 + 1);
                f.power_on();
            });
            // The server outlives the device's power cut.
            let mut server = Scripted::new(Some(new.clone()));
            let outcome = (|| -> Result<(), String> {
                {
                    let mut bench = Bench::default();
                    let mut dev = bench.device(&flash);
                    flash.lock(|f| f.borrow_mut().plan(Fault { at: k, kind }));
                    let mut app = TestLine::default();
                    exchange(&mut dev, &mut app, &mut server, &[], POLLS, |a, s| {
                        ended(a, s, to_bytes, expect_switch)
                    });
                }
                flash.lock(|f| f.borrow_mut().power_on());
                let mut bench = Bench::default();
                let mut dev = bench.device(&flash);
                if !active_is_intact(dev.agent(), &flash) {
                    return Err("no intact active model after the reboot".into());
                }
                let mut app = TestLine::default();
                let end = exchange(&mut dev, &mut app, &mut server, &[], POLLS, |a, s| {
                    ended(a, s, to_bytes, expect_switch)
                });
                // The line ran a model from the start: the old one or the new one.
                let first = app.told.first().copied().flatten().map(|(_, n)| n);
                if first != Some(old_bytes) && first != Some(new_bytes) {
                    return Err(format!("the line started on {first:?}"));
                }
                if end != Ended::Done {
                    return Err(format!(
                        "{end:?}: reports {:?}, line told {:?}",
                        server.steps(),
                        app.told
                    ));
                }
                Ok(())
            })();
            result.record(format_args!("{kind:?} at operation {k}"), outcome);
        }
    }
    result
}
