//! The rollback scenarios, in order on one line (each starts from where the last one left the
//! boards). Each asserts exact end states read from the boards' flash and from the server.

use crate::board::{Board, FlashState, show};
use crate::inference::{self, Inferences, Seen, Validation};
use crate::line::Line;
use crate::releases;
use anyhow::{Context, Result, anyhow, bail, ensure};
use artifact::Version;
use fleet_sim::fixtures::GOOD;
use fleet_sim::release::{LENIENT, STRICT};
use norsim::Rng;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn v(major: u32, minor: u32, patch: u32) -> Version {
    Version::new(major, minor, patch)
}

/// Scales waits with the line's size (2 shared cores run every board).
pub fn timeout(line: &Line, base_s: u64) -> Duration {
    Duration::from_secs(base_s + 15 * line.boards.len() as u64)
}

/// The canary stage: a tenth of the line, at least one board.
fn canaries(line: &Line) -> usize {
    (line.boards.len() / 10).max(1)
}

fn stages(line: &Line) -> Vec<String> {
    if line.boards.len() == 1 {
        vec!["100%".into()]
    } else {
        vec![canaries(line).to_string(), "100%".into()]
    }
}

fn upload(line: &Line, bundle: Vec<u8>) -> Result<i64> {
    line.op.upload(bundle)
}

fn rollout(line: &Line, artifact: i64, stages: &[String], extra: Value) -> Result<i64> {
    let mut spec = json!({
        "artifact_id": artifact,
        "stages": stages,
        "min_accuracy": 0.9,
        "max_latency_ms": 10,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    line.op.rollout(&spec)
}

fn states(line: &Line) -> Result<Vec<FlashState>> {
    line.boards
        .iter()
        .map(|b| b.flash_state().with_context(|| b.id.clone()))
        .collect()
}

/// The ids of a rollout's devices in `state`.
fn devices_in(view: &Value, state: &str) -> Vec<String> {
    view["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["state"] == state)
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect()
}

/// The steps a device reported about `version` of a component, in order.
fn steps(line: &Line, id: &str, version: &str) -> Result<Vec<String>> {
    Ok(line
        .reports(id)?
        .iter()
        .filter(|r| r["version"] == version)
        .filter_map(|r| r["step"].as_str().map(str::to_owned))
        .collect())
}

/// The steps of `steps`, once they end in `last` (the gate may halt a rollout on a device's
/// figures before its last report has arrived).
fn steps_ending(
    line: &Line,
    id: &str,
    version: &str,
    last: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let until = Instant::now() + timeout;
    loop {
        let got = steps(line, id, version)?;
        if got.last().map(String::as_str) == Some(last) || Instant::now() > until {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boots(b: &Board) -> usize {
    b.console()
        .iter()
        .filter(|l| l.starts_with("boot: "))
        .count()
}

/// How long a board's inference count may go without rising while a scenario goes on. A count
/// line is due every 10 inferences, 5 s of emulated time; at 40 boards on 2 cores emulated time
/// ran at about half of wall time (250 inferences in 234 s), so the 70 s there are 7 periods.
fn stall_bound(line: &Line) -> Duration {
    Duration::from_secs(30 + line.boards.len() as u64)
}

/// A board's console from line `from` on, timed from `start` (taken before `from` was read).
fn seen_since(b: &Board, from: usize, start: Instant) -> (Vec<crate::console::Stamped>, Duration) {
    let lines = b.stamped_since(from);
    (lines, start.elapsed())
}

fn as_seen(lines: &[crate::console::Stamped], start: Instant) -> Vec<Seen<'_>> {
    lines
        .iter()
        .map(|l| Seen {
            at: l.at.saturating_duration_since(start),
            text: &l.text,
        })
        .collect()
}

/// Checks a board's inference loop from console line `from` (marked at `start`) to now: never
/// back within a boot, never stalled, risen after `done` if given. Lost lines are logged.
fn inference_since(
    b: &Board,
    from: usize,
    start: Instant,
    done: Option<Instant>,
    stall: Duration,
) -> Result<Inferences> {
    let (lines, end) = seen_since(b, from, start);
    let done = done.map(|d| d.saturating_duration_since(start));
    let got = inference::check(&as_seen(&lines, start), done, end, stall)
        .map_err(|e| anyhow!("{}: {e}", b.id))?;
    if !got.lost.is_empty() {
        println!(
            "hil: {}: lost console line(s) of count(s) {:?}, tolerated (counts {:?})",
            b.id, got.lost, got.counts
        );
    }
    Ok(got)
}

/// Waits until `b`'s count rose after `done`, or `until`.
fn wait_risen(b: &Board, from: usize, start: Instant, done: Instant, until: Instant) {
    let done = done.saturating_duration_since(start);
    while Instant::now() < until {
        let (lines, _) = seen_since(b, from, start);
        if inference::risen_after(&as_seen(&lines, start), done) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lost lines over the boards, for a scenario's detail.
fn lost_note(lost: usize) -> String {
    if lost == 0 {
        String::new()
    } else {
        format!("; {lost} lost console line(s) tolerated")
    }
}

fn expect_all(line: &Line, what: &str, ok: impl Fn(&FlashState) -> bool) -> Result<()> {
    for (b, s) in line.boards.iter().zip(states(line)?) {
        ensure!(ok(&s), "{}: {what}; flash says {s:?}", b.id);
    }
    Ok(())
}

/// Boards with their firmware and the gateway up; model 1.0.0 everywhere (the line's start).
pub fn provision(line: &mut Line, nodes: usize, image: &[u8]) -> Result<String> {
    let installed = testkit::image::signed_payload(&layout::MPS2_AN386, v(1, 0, 0), 1, image);
    line.add_boards(nodes, &installed)?;
    line.wait_devices(timeout(line, 60), |d| d["firmware_version"] == "1.0.0")?;
    let id = upload(line, releases::model(&GOOD, v(1, 0, 0), 1, STRICT)?)?;
    let r = rollout(line, id, &["100%".into()], json!({}))?;
    let view = line.op.wait_rollout(r, timeout(line, 120))?;
    ensure!(view["state"] == "completed", "provisioning rollout: {view}");
    expect_all(line, "model 1.0.0 active and intact", |s| {
        s.model == Some(v(1, 0, 0)) && s.model_intact && s.firmware == Some(v(1, 0, 0))
    })?;
    Ok(format!("{nodes} boards on firmware 1.0.0, model 1.0.0"))
}

/// 1. A good model in stages: validated, switched without a reboot, confirmed; inference never
///    stops.
pub fn good_model(line: &mut Line) -> Result<String> {
    let start = Instant::now();
    let marks: Vec<(usize, usize)> = line
        .boards
        .iter()
        .map(|b| (b.console_len(), boots(b)))
        .collect();
    let id = upload(line, releases::model(&GOOD, v(1, 1, 0), 2, STRICT)?)?;
    let r = rollout(line, id, &stages(line), json!({}))?;
    let view = line.op.wait_rollout(r, timeout(line, 120))?;
    ensure!(view["state"] == "completed", "rollout: {view}");
    // Inference goes on after the switch: every board's count rises after the rollout
    // completed, within the stall bound. The waits share one deadline, so they overlap (one
    // after another, a line of 40 boards spent most of this scenario here).
    let (done, stall) = (Instant::now(), stall_bound(line));
    for (b, (from, _)) in line.boards.iter().zip(&marks) {
        wait_risen(b, *from, start, done, done + stall);
    }
    // The server learns a board's model from its next check-in after the confirmation, which
    // may come after the rollout completed (at 40 boards it had not for one board 14 s on).
    line.wait_devices(timeout(line, 30), |d| d["model_version"] == "1.1.0")?;
    let mut lost = 0;
    for (b, (from, boots_before)) in line.boards.iter().zip(&marks) {
        let got = inference_since(b, *from, start, Some(done), stall)?;
        lost += got.lost.len();
        ensure!(
            boots(b) == *boots_before,
            "{}: rebooted during a model update",
            b.id
        );
        // The good model's validation is shorter than the line's inference period, so no
        // inference need fall inside it (the slow model's shows they run through one); the
        // count must not go back.
        ensure!(
            matches!(got.validations.first(),
                Some(Validation { began, ended: Some(("switched", after)) }) if after >= began),
            "{}: validations {:?} (counts {:?})",
            b.id,
            got.validations,
            got.counts
        );
        let steps = steps(line, &b.id, "1.1.0")?;
        ensure!(
            steps == ["downloaded", "validated", "confirmed"],
            "{}: reports {steps:?}",
            b.id
        );
        let d = line.device(&b.id)?;
        ensure!(d["model_version"] == "1.1.0", "{}: server says {d}", b.id);
    }
    expect_all(
        line,
        "model 1.1.0 active and intact, nothing pending",
        |s| s.model == Some(v(1, 1, 0)) && s.model_intact && !s.pending && s.unsent_reports == 0,
    )?;
    Ok(format!(
        "{} boards on 1.1.0 in {} stages, no reboot{}",
        line.boards.len(),
        stages(line).len(),
        lost_note(lost)
    ))
}

/// Who turns a bad model back in `rejected_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// The canaries, on their own validation sets (a strict device policy); `long_validation`:
    /// the fixture's set takes them longer than several inference periods, so the line's
    /// inference must have run during it.
    Canaries { long_validation: bool },
    /// The server's gate: a lenient device policy lets the canaries take the model, the gate
    /// halts on their figures and sends them back; how long the send-back took to reach each
    /// one is measured (`halt_send_back_s`).
    Server,
}

/// 2 and 3. A bad model: the canaries reject it on their own validation set, or take it and are
/// sent back by the server's halt; they end on the previous model, and the other boards never
/// download it.
pub fn rejected_model(
    line: &mut Line,
    fixture: &fleet_sim::fixtures::Fixture,
    version: Version,
    judge: Judge,
) -> Result<String> {
    let start = Instant::now();
    let marks: Vec<usize> = line.boards.iter().map(Board::console_len).collect();
    let shown = show(Some(version));
    let policy = match judge {
        Judge::Canaries { .. } => STRICT,
        Judge::Server => LENIENT,
    };
    let id = upload(line, releases::model(fixture, version, 3, policy)?)?;
    let r = rollout(line, id, &stages(line), json!({}))?;
    let view = line.op.wait_rollout(r, timeout(line, 120))?;
    ensure!(view["state"] == "halted", "rollout not halted: {view}");
    let gate = view["halted_gate"].as_str().unwrap_or_default().to_owned();
    let offered: Vec<String> = view["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["stage"] == 0)
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        offered.len() == canaries(line).min(line.boards.len()),
        "canaries {offered:?}"
    );
    let halted_ms = event_ms(&view, "halted")?;
    let mut lost = 0;
    let mut send_backs = Vec::new();
    for (b, &from) in line.boards.iter().zip(&marks) {
        let canary = offered.contains(&b.id);
        let steps = if canary {
            steps_ending(line, &b.id, &shown, "reverted", timeout(line, 30))?
        } else {
            steps(line, &b.id, &shown)?
        };
        // Every board's line goes on through the scenario; a canary's through its validation
        // when that is long.
        let got = inference_since(b, from, start, None, stall_bound(line))?;
        lost += got.lost.len();
        if !canary {
            ensure!(steps.is_empty(), "{} was offered {shown}: {steps:?}", b.id);
            continue;
        }
        match judge {
            Judge::Canaries { long_validation } => {
                ensure!(
                    !long_validation
                        || matches!(got.validations.first(),
                            Some(Validation { began, ended: Some(("kept", after)) }) if after > began),
                    "canary {}: validations {:?} (counts {:?})",
                    b.id,
                    got.validations,
                    got.counts
                );
                ensure!(
                    steps.first().map(String::as_str) == Some("downloaded")
                        && steps.contains(&"validated".to_owned())
                        && steps.last().map(String::as_str) == Some("reverted"),
                    "canary {}: reports {steps:?}",
                    b.id
                );
            }
            Judge::Server => {
                // A canary still validating when another's figures halted the rollout was
                // cancelled (it ends on 1.1.0 all the same, checked below); one that took the
                // model was sent back. The slow fixture's validation is long: the line's
                // inference ran through it.
                let Some(took) = got
                    .validations
                    .iter()
                    .find(|v| matches!(v.ended, Some(("switched", _))))
                else {
                    continue;
                };
                ensure!(
                    matches!(took.ended, Some((_, after)) if after > took.began),
                    "canary {}: validations {:?} (counts {:?})",
                    b.id,
                    got.validations,
                    got.counts
                );
                ensure!(
                    steps.ends_with(&["confirmed".to_owned(), "reverted".to_owned()]),
                    "canary {}: reports {steps:?}",
                    b.id
                );
                send_backs.push(send_back(line, b, from, halted_ms, &shown)?);
            }
        }
    }
    let cancelled = devices_in(&view, "cancelled");
    for b in &line.boards {
        ensure!(
            offered.contains(&b.id) || cancelled.contains(&b.id),
            "{} neither a canary nor cancelled: {view}",
            b.id
        );
    }
    expect_all(line, "model 1.1.0 active and intact", |s| {
        s.model == Some(v(1, 1, 0)) && s.model_intact && !s.pending
    })?;
    let sent_back = if judge == Judge::Server {
        ensure!(!send_backs.is_empty(), "no canary took {shown}");
        let worst = send_backs.iter().copied().fold(0.0, f64::max);
        line.figures
            .insert("halt_send_back_s", (worst * 100.0).round() / 100.0);
        format!(
            "; {} sent back, the last {worst:.2} s after the halt",
            send_backs.len()
        )
    } else {
        String::new()
    };
    Ok(format!(
        "halted on {gate}; {} canaries back on 1.1.0{sent_back}, {} boards never offered it{}",
        offered.len(),
        line.boards.len() - offered.len(),
        lost_note(lost)
    ))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When the rollout view's first event of `kind` was written (server wall clock, ms).
fn event_ms(view: &Value, kind: &str) -> Result<i64> {
    view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == kind)
        .and_then(|e| e["at_ms"].as_i64())
        .ok_or_else(|| anyhow!("no {kind} event: {view}"))
}

/// Seconds from the server's order to send canary `b` back (the halt, or its confirmation if
/// that came after) to its console's switch back. The harness and the server share a clock;
/// a console stamp is an `Instant`, put on that clock by how long ago it was.
fn send_back(line: &Line, b: &Board, from: usize, halted_ms: i64, version: &str) -> Result<f64> {
    let confirmed_ms = line
        .reports(&b.id)?
        .iter()
        .filter(|r| r["version"] == version && r["step"] == "confirmed")
        .find_map(|r| r["received_ms"].as_i64())
        .ok_or_else(|| anyhow!("{}: no confirmed report", b.id))?;
    let ordered = halted_ms.max(confirmed_ms);
    let back = b
        .stamped_since(from)
        .into_iter()
        .rfind(|l| l.text == "agent: switched model")
        .ok_or_else(|| anyhow!("{}: never switched back", b.id))?;
    let back_ms = unix_ms() - back.at.elapsed().as_millis() as i64;
    Ok((back_ms - ordered).max(0) as f64 / 1000.0)
}

/// 4. A good firmware: swap, boot on trial, validate under it, confirm.
pub fn good_firmware(line: &mut Line, image: &[u8]) -> Result<String> {
    let marks: Vec<usize> = line.boards.iter().map(Board::console_len).collect();
    let models: Vec<Option<Version>> = states(line)?.into_iter().map(|s| s.model).collect();
    let id = upload(line, releases::firmware(image, v(2, 0, 0), 2)?)?;
    let r = rollout(line, id, &stages(line), json!({}))?;
    let view = line.op.wait_rollout(r, timeout(line, 240))?;
    ensure!(view["state"] == "completed", "rollout: {view}");
    for (b, from) in line.boards.iter().zip(&marks) {
        let console = b.console_since(*from);
        ensure!(
            console.iter().any(|l| l.starts_with("boot: trial 2.0.0 "))
                && console.iter().any(|l| l == "agent: firmware confirmed"),
            "{}: console {console:?}",
            b.id
        );
        let steps = steps(line, &b.id, "2.0.0")?;
        ensure!(
            steps
                == [
                    "downloaded",
                    "installed",
                    "booted",
                    "validated",
                    "confirmed"
                ],
            "{}: reports {steps:?}",
            b.id
        );
    }
    line.wait_devices(timeout(line, 30), |d| d["firmware_version"] == "2.0.0")?;
    for ((b, s), model) in line.boards.iter().zip(states(line)?).zip(models) {
        ensure!(
            s.firmware == Some(v(2, 0, 0))
                && s.boot_state == "boot"
                && s.model == model
                && s.model_intact,
            "{}: not on firmware 2.0.0 confirmed with model {} intact: {s:?}",
            b.id,
            show(model)
        );
    }
    Ok("every board swapped to 2.0.0 and confirmed it".into())
}

/// 6. A firmware rolled out as a delta: every board on 2.0.0 gets 2.1.0 (one function changed)
///    as a delta from its running image, applied from the active slot into the DFU slot; one
///    board whose slot differs (another build, signed as 2.0.0: what the server believes it
///    runs is not what it holds) declines the delta after hashing its own image and takes the
///    full image; a canary's power is cut in the middle of applying its delta, and it resumes.
///    Every board ends on 2.1.0 confirmed.
pub fn delta_firmware(line: &mut Line, other: &[u8], changed: &[u8]) -> Result<String> {
    let port = line.gateway_port;
    let older = line.boards.len() - 1;
    let up_within = timeout(line, 60);
    {
        let b = &mut line.boards[older];
        let from = b.console_len();
        b.power_off();
        // The hanging variant runs normally once confirmed; its bytes are no base of a delta.
        let image = testkit::image::signed_payload(&layout::MPS2_AN386, v(2, 0, 0), 2, other);
        b.reflash_active(&image)?;
        b.power_on(port)?;
        ensure!(
            b.wait_console(from, up_within, |l| l
                .starts_with("agent: up, firmware 2.0.0 confirmed")),
            "{}: not up again on its other 2.0.0",
            b.id
        );
    }
    let marks: Vec<usize> = line.boards.iter().map(Board::console_len).collect();
    let before = line.gateway_stats()["device_bytes"].as_u64().unwrap_or(0);
    let id = upload(line, releases::firmware(changed, v(2, 1, 0), 3)?)?;
    let r = rollout(line, id, &stages(line), json!({}))?;
    // The cut: the first board, once its DFU slot holds some of the new image's sectors and not
    // yet all of them.
    let (mut cut_at, until) = (None, Instant::now() + timeout(line, 120));
    while cut_at.is_none() && Instant::now() < until {
        let (written, of) = line.boards[0].dfu_sectors_of(changed)?;
        if written >= 2 && written + 2 <= of {
            let b = &mut line.boards[0];
            b.cut_power();
            std::thread::sleep(Duration::from_millis(100));
            b.power_on(port)?;
            cut_at = Some((written, of));
        } else if written + 2 > of {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (written, of) = cut_at.context("the first board applied its delta before a cut landed")?;
    let view = line.op.wait_rollout(r, timeout(line, 240))?;
    ensure!(view["state"] == "completed", "rollout: {view}");
    for (i, (b, from)) in line.boards.iter().zip(&marks).enumerate() {
        let console = b.console_since(*from);
        let fetched: Vec<&String> = console
            .iter()
            .filter(|l| l.starts_with("agent: fetching release "))
            .collect();
        let as_delta = fetched.iter().any(|l| l.ends_with(" as a delta"));
        ensure!(
            as_delta == (i != older) && !fetched.is_empty(),
            "{}: {fetched:?}",
            b.id
        );
        ensure!(
            console.iter().any(|l| l.starts_with("boot: trial 2.1.0 "))
                && console.iter().any(|l| l == "agent: firmware confirmed"),
            "{}: console {console:?}",
            b.id
        );
        // The cut board resumed its delta: it says so twice, and reported each step once.
        if i == 0 {
            ensure!(
                fetched.len() >= 2,
                "{}: no resumed delta: {fetched:?}",
                b.id
            );
        }
        let steps = steps(line, &b.id, "2.1.0")?;
        ensure!(
            steps
                == [
                    "downloaded",
                    "installed",
                    "booted",
                    "validated",
                    "confirmed"
                ],
            "{}: reports {steps:?}",
            b.id
        );
    }
    line.wait_devices(timeout(line, 30), |d| d["firmware_version"] == "2.1.0")?;
    for (b, s) in line.boards.iter().zip(states(line)?) {
        ensure!(
            s.firmware == Some(v(2, 1, 0)) && s.boot_state == "boot" && s.model_intact,
            "{}: not on 2.1.0 confirmed: {s:?}",
            b.id
        );
    }
    let sent = line.gateway_stats()["device_bytes"].as_u64().unwrap_or(0) - before;
    let n = line.boards.len() as u64;
    let full = changed.len() as u64;
    // What the boards received: n - 1 deltas and one full image (compressed or not), well
    // under n full images.
    ensure!(
        sent < full + (n - 1) * full / 10,
        "{sent} bytes to {n} boards for a {full}-byte image"
    );
    Ok(format!(
        "{} boards took 2.1.0 as a delta, the one whose slot differs in full: {sent} bytes to the boards for a \
         {full}-byte image ({:.1} % of {n} full images); cut mid-apply at {written}/{of} sectors, resumed",
        n - 1,
        100.0 * sent as f64 / (n * full) as f64
    ))
}

/// 5. Bad firmwares: one fails its validation on trial (latency), one hangs so the watchdog
///    fires; the bootloader reverts at the next reset and the server sees the revert.
pub fn bad_firmware(line: &mut Line, slow: &[u8], hang: &[u8]) -> Result<String> {
    let mut gates = Vec::new();
    for (image, version, sign) in [
        (slow, v(3, 0, 0), "agent: checking firmware on trial"),
        (hang, v(3, 0, 1), "agent: hanging on trial"),
    ] {
        let shown = show(Some(version));
        let marks: Vec<usize> = line.boards.iter().map(Board::console_len).collect();
        let id = upload(line, releases::firmware(image, version, 3)?)?;
        let r = rollout(line, id, &stages(line), json!({}))?;
        let view = line.op.wait_rollout(r, timeout(line, 240))?;
        ensure!(view["state"] == "halted", "{shown}: not halted: {view}");
        gates.push(format!(
            "{shown} halted on {}",
            view["halted_gate"].as_str().unwrap_or_default()
        ));
        let canaries: Vec<String> = view["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["stage"] == 0)
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect();
        for (b, from) in line.boards.iter().zip(&marks) {
            let steps = if canaries.contains(&b.id) {
                steps_ending(line, &b.id, &shown, "reverted", timeout(line, 60))?
            } else {
                steps(line, &b.id, &shown)?
            };
            if canaries.contains(&b.id) {
                let console = b.console_since(*from);
                ensure!(
                    console
                        .iter()
                        .any(|l| l.starts_with(&format!("boot: trial {shown} ")))
                        && console.iter().any(|l| l == sign)
                        && console
                            .iter()
                            .any(|l| l.starts_with("boot: reverted 2.0.0 ")),
                    "{}: console {console:?}",
                    b.id
                );
                ensure!(
                    steps.last().map(String::as_str) == Some("reverted"),
                    "{}: reports {steps:?}",
                    b.id
                );
            } else {
                ensure!(steps.is_empty(), "{} was offered {shown}: {steps:?}", b.id);
            }
        }
        line.wait_devices(timeout(line, 30), |d| d["firmware_version"] == "2.0.0")?;
        expect_all(line, "back on firmware 2.0.0, confirmed", |s| {
            s.firmware == Some(v(2, 0, 0)) && s.boot_state == "boot" && s.model_intact
        })?;
    }
    Ok(gates.join("; "))
}

/// Cuts power at random moments while rollout `r` runs, `per_board` times per board, and after
/// each board's "resetting" line (in the middle of the bootloader's swap) when `at_swap`.
fn cut_while_running(
    line: &mut Line,
    r: i64,
    rng: &mut Rng,
    per_board: u32,
    at_swap: bool,
) -> Result<u32> {
    let port = line.gateway_port;
    let start_cuts: Vec<u32> = line.boards.iter().map(|b| b.power_cuts).collect();
    let marks: Vec<usize> = line.boards.iter().map(Board::console_len).collect();
    let mut swap_cut = vec![!at_swap; line.boards.len()];
    let until = Instant::now() + timeout(line, 240);
    loop {
        let state = line.op.get(&format!("/api/rollouts/{r}"))?["state"].clone();
        if state != "running" || Instant::now() > until {
            break;
        }
        // A cut at a random point: the board's emulator is killed, then powered on again.
        let i = rng.below(line.boards.len() as u64) as usize;
        if line.boards[i].power_cuts - start_cuts[i] < per_board {
            std::thread::sleep(Duration::from_millis(200 + rng.below(1200)));
            let b = &mut line.boards[i];
            b.cut_power();
            std::thread::sleep(Duration::from_millis(100));
            b.power_on(port)?;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        // In the middle of a swap: the first reset after the firmware was installed.
        for (i, b) in line.boards.iter_mut().enumerate() {
            if !swap_cut[i]
                && b.console_since(marks[i])
                    .iter()
                    .any(|l| l == "agent: resetting")
            {
                std::thread::sleep(Duration::from_millis(rng.below(400)));
                b.cut_power();
                std::thread::sleep(Duration::from_millis(100));
                b.power_on(port)?;
                swap_cut[i] = true;
            }
        }
    }
    Ok(line
        .boards
        .iter()
        .zip(start_cuts)
        .map(|(b, s)| b.power_cuts - s)
        .sum())
}

/// A board after an update under power cuts: on the new version with its confirmation at the
/// server, or on the old one with a revert or failure reported. Returns whether it updated.
fn completed_or_reverted(
    line: &Line,
    b: &Board,
    running: Option<Version>,
    new: Version,
    old: Version,
) -> Result<bool> {
    let steps = steps(line, &b.id, &show(Some(new)))?;
    match running {
        Some(r) if r == new => {
            ensure!(
                steps.last().map(String::as_str) == Some("confirmed"),
                "{}: on {} with reports {steps:?}",
                b.id,
                show(Some(new))
            );
            Ok(true)
        }
        Some(r) if r == old => {
            ensure!(
                steps.iter().any(|s| s == "reverted" || s == "failed"),
                "{}: on {} without a reported revert or failure: {steps:?}",
                b.id,
                show(Some(old))
            );
            Ok(false)
        }
        other => bail!(
            "{}: running {} (no valid signed image of either)",
            b.id,
            show(other)
        ),
    }
}

/// 7. Power cuts at random points of a model write, a firmware download and a swap: every
///    board ends on a valid signed firmware and an intact model, and each update either
///    completed after power returned or was reverted (and reported so).
pub fn power_cuts(line: &mut Line, image: &[u8], seed: u64) -> Result<String> {
    let mut rng = Rng::new(seed);
    // Failures are the boards' own verdicts here; the rollout runs through so that every
    // board's outcome is seen.
    let lenient = json!({ "max_failure_rate": 1.0 });

    let id = upload(line, releases::model(&GOOD, v(1, 4, 0), 4, STRICT)?)?;
    let r = rollout(line, id, &["100%".into()], lenient.clone())?;
    let model_cuts = cut_while_running(line, r, &mut rng, 2, false)?;
    let view = line.op.wait_rollout(r, timeout(line, 180))?;
    // Halted only when no board could show a validated confirmation (each reverted).
    ensure!(
        view["state"] == "completed" || view["halted_gate"] == "min_reports",
        "model rollout: {view}"
    );
    for (b, s) in line.boards.iter().zip(states(line)?) {
        ensure!(s.model_intact && !s.pending, "{}: {s:?}", b.id);
        completed_or_reverted(line, b, s.model, v(1, 4, 0), v(1, 1, 0))?;
    }

    let id = upload(line, releases::firmware(image, v(4, 0, 0), 4)?)?;
    let r = rollout(line, id, &["100%".into()], lenient)?;
    let firmware_cuts = cut_while_running(line, r, &mut rng, 1, true)?;
    let view = line.op.wait_rollout(r, timeout(line, 300))?;
    ensure!(
        view["state"] == "completed" || view["halted_gate"] == "min_reports",
        "firmware rollout: {view}"
    );
    let mut updated = 0;
    for (b, s) in line.boards.iter().zip(states(line)?) {
        ensure!(
            s.boot_state == "boot" && s.model_intact && !s.pending,
            "{}: {s:?}",
            b.id
        );
        updated += u32::from(completed_or_reverted(
            line,
            b,
            s.firmware,
            v(4, 0, 0),
            v(2, 1, 0),
        )?);
    }
    // A cut in the middle of a console line leaves its piece unread (`console.rs`).
    let cut_lines: usize = line.boards.iter().map(|b| b.cut_lines().len()).sum();
    Ok(format!(
        "{model_cuts} cuts during the model update, {firmware_cuts} during the firmware update \
         and swap; {updated}/{} boards on 4.0.0, the rest reverted and reported; rollout {}; \
         {cut_lines} console line(s) cut mid-print, dropped",
        line.boards.len(),
        view["state"].as_str().unwrap_or_default()
    ))
}

/// 9. The gateway killed and restarted, then the server down for a while, in the middle of a
///    rollout: no report lost (each board's downloaded, validated and confirmed are at the
///    server exactly once), and the rollout resumes and completes.
pub fn outage(line: &mut Line) -> Result<String> {
    let version = v(1, 5, 0);
    let id = upload(line, releases::model(&GOOD, version, 5, STRICT)?)?;
    let plan = stages(line);
    let r = rollout(line, id, &plan, json!({}))?;
    std::thread::sleep(Duration::from_millis(1500));
    line.kill_gateway();
    std::thread::sleep(Duration::from_secs(2));
    line.start_gateway()?;
    // The server goes down once the last stage has started (its devices have their command).
    let until = Instant::now() + timeout(line, 120);
    while line.op.get(&format!("/api/rollouts/{r}"))?["stage"].as_u64()
        != Some(plan.len() as u64 - 1)
    {
        ensure!(Instant::now() < until, "the last stage never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    line.kill_server();
    std::thread::sleep(Duration::from_secs(8));
    let spooled_during = line.gateway_stats();
    line.start_server()?;
    let view = line.op.wait_rollout(r, timeout(line, 180))?;
    ensure!(view["state"] == "completed", "rollout: {view}");
    for b in &line.boards {
        let steps = steps(line, &b.id, "1.5.0")?;
        ensure!(
            steps == ["downloaded", "validated", "confirmed"],
            "{}: reports {steps:?}",
            b.id
        );
    }
    expect_all(line, "model 1.5.0 active and intact", |s| {
        s.model == Some(version) && s.model_intact && !s.pending
    })?;
    Ok(format!(
        "gateway restarted, server down 8 s; every report delivered once (gateway: {} reports \
         spooled in all)",
        spooled_during["reports_spooled"]
    ))
}
