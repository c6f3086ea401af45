//! Streams (protocol revision 1.3): the server makes an upload's FDL1 streams (compressed, and a
//! delta from the earlier release of the same model), offers a device the delta from the
//! release it runs (else the compressed stream; nothing to a device that did not say it decodes
//! streams), serves a stream's chunks and ranges only for the release assigned to the device,
//! and counts the bytes it sent each device of a rollout. Then the real agent session takes a
//! model update through a delta end to end.

mod support;

use agent::{Agent, Next, Outgoing, Session};
use artifact::Version;
use fleet_sim::operator::Operator;
use protocol::{
    BootStatus, CheckIn, ChunkRequest, Command, Counters, Firmware, ModelSlot, RunningModel,
    STREAM_FDL1, ServerFrame, StreamOffer,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};
use testkit::device::*;
use testkit::release::{Release, model_size, release};

fn bundle(r: &Release) -> Vec<u8> {
    artifact::bundle::write(&r.envelope, &[&r.payload]).unwrap()
}

fn post(base: &str, credential: &str, path: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{base}/api/device/{path}"))
        .bearer_auth(credential)
        .body(body)
        .send()
        .unwrap()
}

/// A check-in of a device running model "digits" `model` (None: no model), saying it decodes
/// FDL1 streams or not.
fn check_in(
    base: &str,
    credential: &str,
    device: &str,
    model: Option<Version>,
    streams: Option<u8>,
) -> Command<'static> {
    let c = CheckIn {
        device_id: device,
        board: "mps2-an386",
        firmware: Firmware {
            version: Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        model: model.map(|version| RunningModel {
            name: "digits",
            version,
            slot: ModelSlot::A,
        }),
        update: None,
        validation: None,
        counters: Counters::default(),
        runtime_abi: Some(2),
        wait_ms: None,
        streams,
    };
    let resp = post(base, credential, "checkin", protocol::to_vec(&c));
    assert_eq!(resp.status(), 200);
    let answer: &'static [u8] = Box::leak(resp.bytes().unwrap().to_vec().into_boxed_slice());
    match ServerFrame::decode(answer).unwrap() {
        ServerFrame::Command(c) => c,
        other => panic!("{other:?}"),
    }
}

/// The update a device is offered once the rollout's stage reaches it.
fn wait_update(
    base: &str,
    credential: &str,
    device: &str,
    model: Option<Version>,
    streams: Option<u8>,
) -> (u64, Option<StreamOffer>) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match check_in(base, credential, device, model, streams) {
            Command::Update {
                release, stream, ..
            } => return (release, stream),
            other if Instant::now() > until => panic!("{device}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A chunk request: the chunk's data, or the refusal's status.
fn chunk(
    base: &str,
    credential: &str,
    release: u64,
    stream: Option<u64>,
    offset: u32,
    len: u32,
) -> Result<Vec<u8>, u16> {
    let r = ChunkRequest {
        release,
        offset,
        len,
        stream,
    };
    let resp = post(base, credential, "chunk", protocol::to_vec(&r));
    if resp.status() != 200 {
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"], "forbidden", "the API's error shape");
        return Err(status);
    }
    let bytes = resp.bytes().unwrap();
    match ServerFrame::decode(&bytes).unwrap() {
        ServerFrame::Chunk(c) => {
            assert_eq!((c.release, c.offset, c.stream), (release, offset, stream));
            Ok(c.data.to_vec())
        }
        other => panic!("{other:?}"),
    }
}

/// A whole stream through chunks of 4 KiB.
fn fetch_stream(base: &str, credential: &str, release: u64, offer: &StreamOffer) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < offer.len as usize {
        let data = chunk(
            base,
            credential,
            release,
            Some(offer.id),
            out.len() as u32,
            4096,
        )
        .unwrap();
        assert!(!data.is_empty());
        out.extend_from_slice(&data);
    }
    assert_eq!(out.len(), offer.len as usize);
    out
}

fn streams_of(op: &Operator, id: i64) -> Vec<Value> {
    op.get(&format!("/api/artifacts/{id}")).unwrap()["streams"]
        .as_array()
        .unwrap()
        .clone()
}

fn bytes_sent(op: &Operator, rollout: i64) -> std::collections::BTreeMap<String, i64> {
    op.get(&format!("/api/rollouts/{rollout}")).unwrap()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap().to_owned(),
                d["bytes_sent"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_model_update_is_offered_and_served_as_a_delta_from_the_running_release() {
    for backend in support::backends() {
        let s = support::start(backend);
        let base = s.base.as_str();
        let op = Operator::new(base, &s.token);
        let delta_dev = op.enroll("s-delta", "mps2-an386", &["streams"]).unwrap();
        let plain_dev = op.enroll("s-plain", "mps2-an386", &["streams"]).unwrap();
        let unknown_dev = op.enroll("s-unknown", "mps2-an386", &["streams"]).unwrap();
        let v1r = release(0, "good", Version::new(1, 0, 0), 1, "mps2-an386");
        let v2r = release(0, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
        let v1 = op.upload(bundle(&v1r)).unwrap();
        let v2 = op.upload(bundle(&v2r)).unwrap();
        let v1_sha: [u8; 32] = Sha256::digest(&v1r.payload).into();

        // At upload: v1 has its compressed stream only (nothing earlier of "digits"); v2 a
        // compressed stream and a delta from v1, both shorter than its payload.
        let s1 = streams_of(&op, v1);
        assert_eq!(s1.len(), 1, "{s1:?}");
        assert_eq!(s1[0]["base_artifact_id"], Value::Null);
        let s2 = streams_of(&op, v2);
        assert_eq!(s2.len(), 2, "{s2:?}");
        let compressed = s2.iter().find(|s| s["base_artifact_id"].is_null()).unwrap();
        let delta = s2.iter().find(|s| s["base_artifact_id"] == v1).unwrap();
        assert_eq!(delta["base_sha256"], hex::encode(v1_sha));
        for st in &s2 {
            assert!(st["len"].as_u64().unwrap() < v2r.payload.len() as u64);
        }
        assert!(delta["len"].as_u64() < compressed["len"].as_u64());

        let rollout = op
            .rollout(
                &json!({"artifact_id": v2, "selector": {"tags": ["streams"]}, "stages": ["100%"]}),
            )
            .unwrap();
        // Running v1 and decoding streams: the delta from v1.
        let (release, offer) = wait_update(
            base,
            &delta_dev,
            "s-delta",
            Some(Version::new(1, 0, 0)),
            Some(STREAM_FDL1),
        );
        assert_eq!(release, v2 as u64);
        let offer = offer.expect("a stream offer");
        assert_eq!(offer.base_sha256, Some(v1_sha));
        assert_eq!(offer.id, delta["id"].as_u64().unwrap());
        assert_eq!(u64::from(offer.len), delta["len"].as_u64().unwrap());
        // Not saying it decodes streams: the plain payloads.
        let (_, plain_offer) = wait_update(
            base,
            &plain_dev,
            "s-plain",
            Some(Version::new(1, 0, 0)),
            None,
        );
        assert_eq!(plain_offer, None);
        // A version the server has no release of: the compressed stream.
        let (_, unknown_offer) = wait_update(
            base,
            &unknown_dev,
            "s-unknown",
            Some(Version::new(0, 9, 0)),
            Some(STREAM_FDL1),
        );
        let unknown_offer = unknown_offer.expect("the compressed stream");
        assert_eq!(unknown_offer.base_sha256, None);
        assert_eq!(unknown_offer.id, compressed["id"].as_u64().unwrap());

        // Another release's stream, a release not assigned, an unknown stream: 403.
        let v1_stream = s1[0]["id"].as_u64().unwrap();
        assert_eq!(
            chunk(base, &delta_dev, v2 as u64, Some(v1_stream), 0, 64),
            Err(403)
        );
        assert_eq!(
            chunk(base, &delta_dev, v1 as u64, Some(v1_stream), 0, 64),
            Err(403)
        );
        assert_eq!(
            chunk(base, &delta_dev, v2 as u64, Some(1 << 40), 0, 64),
            Err(403)
        );
        assert_eq!(
            chunk(base, &delta_dev, v2 as u64, Some(u64::MAX), 0, 64),
            Err(403)
        );
        let resp = reqwest::blocking::Client::new()
            .get(format!(
                "{base}/api/device/artifacts/{v2}/streams/{v1_stream}"
            ))
            .bearer_auth(&delta_dev)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 403);

        // The delta's chunks, decoded against v1's payload, are v2's payload.
        let stream = fetch_stream(base, &delta_dev, v2 as u64, &offer);
        assert_eq!(
            delta::decode::apply(&v1r.payload, &stream).unwrap(),
            v2r.payload
        );
        // The plain path unchanged: one chunk of the payload.
        let plain = chunk(base, &plain_dev, v2 as u64, None, 0, 1000).unwrap();
        assert_eq!(plain, v2r.payload[..1000]);
        // The compressed stream through the gateways' route: a range, then whole.
        let get = |range: Option<&str>| {
            let mut rq = reqwest::blocking::Client::new()
                .get(format!(
                    "{base}/api/device/artifacts/{v2}/streams/{}",
                    unknown_offer.id
                ))
                .bearer_auth(&unknown_dev);
            if let Some(r) = range {
                rq = rq.header("range", r);
            }
            rq.send().unwrap()
        };
        let part = get(Some("bytes=0-99"));
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"].to_str().unwrap(),
            format!("bytes 0-99/{}", unknown_offer.len)
        );
        let part = part.bytes().unwrap();
        let whole = get(None);
        assert_eq!(whole.status(), 200);
        let whole = whole.bytes().unwrap();
        assert_eq!(whole.len(), unknown_offer.len as usize);
        assert_eq!(part[..], whole[..100]);
        assert_eq!(delta::decode::apply(&[], &whole).unwrap(), v2r.payload);
        assert_eq!(get(Some("bytes=0-99999999")).status(), 416);

        // Bytes sent, per device of the rollout: exactly what was served.
        let sent = bytes_sent(&op, rollout);
        assert_eq!(sent["s-delta"], i64::from(offer.len));
        assert_eq!(sent["s-plain"], 1000);
        assert_eq!(sent["s-unknown"], 100 + i64::from(unknown_offer.len));
    }
}

/// Drives the real agent session over HTTP until `done` holds (validating models with the
/// release `r`'s size); returns the number of exchanges.
fn run_device(
    base: &str,
    credential: &str,
    session: &mut Session<'_, Flash>,
    read_flash: &dyn Fn(usize, usize) -> Vec<u8>,
    r: &Release,
    done: impl Fn(&mut Session<'_, Flash>) -> bool,
) {
    let http = reqwest::blocking::Client::new();
    let mut now = 0u64;
    let until = Instant::now() + Duration::from_secs(30);
    while !done(session) {
        assert!(Instant::now() < until, "the device did not finish");
        if let Some(action) = session.take_action() {
            if action == Next::Validate {
                let a = session.agent();
                let region = a.region(a.inactive_slot());
                let slot = read_flash(region.offset as usize, region.end() as usize);
                let mut arena = vec![0u8; 64 * 1024];
                let result =
                    session
                        .agent()
                        .validate(&slot, &mut arena, clock_for(&slot, model_size(r)));
                session.after_action(result).unwrap();
            }
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let (path, n) = match session.poll_transmit(now) {
            Some(Outgoing::CheckIn(c)) => ("checkin", protocol::encode(&c, &mut buf).unwrap()),
            Some(Outgoing::ChunkRequest(c)) => ("chunk", protocol::encode(&c, &mut buf).unwrap()),
            Some(Outgoing::Report(c)) => ("reports", protocol::encode(&c, &mut buf).unwrap()),
            None => {
                // Idle: the next check-in, a little later in real time too (the engine ticks).
                now = session.next_wake_ms().max(now + 1);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let resp = http
            .post(format!("{base}/api/device/{path}"))
            .bearer_auth(credential)
            .body(buf[..n].to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let bytes = resp.bytes().unwrap();
        session
            .handle(&ServerFrame::decode(&bytes).unwrap(), now)
            .unwrap();
    }
}

#[test]
fn the_agent_installs_a_model_through_a_compressed_stream_then_a_delta() {
    let s = support::start(support::Backend::Sqlite);
    let base = s.base.as_str();
    let op = Operator::new(base, &s.token);
    let credential = op.enroll("node-1", "mps2-an386", &["e2e"]).unwrap();
    let v1r = release(0, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let v2r = release(0, "per_tensor", Version::new(1, 1, 0), 2, "mps2-an386");
    let v1 = op.upload(bundle(&v1r)).unwrap();
    let v2 = op.upload(bundle(&v2r)).unwrap();

    let flash = new_flash();
    let mut agent = Agent::open(
        &flash,
        LAYOUT,
        testkit::keys::trust_root(),
        identity_of("node-1"),
    )
    .unwrap();
    agent.set_stream_decoder(Box::leak(Box::new(delta::Decoder::new())));
    let read_flash = |from: usize, to: usize| flash.lock(|f| f.borrow().bytes()[from..to].to_vec());
    let mut session = Session::new(
        agent,
        Firmware {
            version: Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        1,
        0,
    );
    let settled = |want: (u32, u32, u32)| {
        move |s: &mut Session<'_, Flash>| {
            s.agent().active().is_some_and(|a| a.version == want) && s.agent().report().is_none()
        }
    };
    // No model yet: the first release comes as its compressed stream.
    let r1 = op
        .rollout(&json!({"artifact_id": v1, "selector": {"tags": ["e2e"]}, "stages": ["100%"]}))
        .unwrap();
    run_device(
        base,
        &credential,
        &mut session,
        &read_flash,
        &v1r,
        settled((1, 0, 0)),
    );
    let compressed = &streams_of(&op, v1)[0];
    assert_eq!(
        bytes_sent(&op, r1)["node-1"],
        compressed["len"].as_i64().unwrap()
    );
    op.wait_rollout(r1, Duration::from_secs(10)).unwrap();

    // Then the second through the delta from the first, which the device holds.
    let r2 = op
        .rollout(&json!({"artifact_id": v2, "selector": {"tags": ["e2e"]}, "stages": ["100%"]}))
        .unwrap();
    run_device(
        base,
        &credential,
        &mut session,
        &read_flash,
        &v2r,
        settled((1, 1, 0)),
    );
    let delta = streams_of(&op, v2)
        .into_iter()
        .find(|s| s["base_artifact_id"] == v1)
        .unwrap();
    let sent = bytes_sent(&op, r2)["node-1"];
    assert_eq!(sent, delta["len"].as_i64().unwrap());
    assert!(sent < v2r.payload.len() as i64 / 2, "{sent} bytes sent");
    let steps: Vec<String> = op
        .get("/api/devices/node-1/reports")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["version"].as_str().unwrap(),
                r["step"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "1.0.0 downloaded",
            "1.0.0 validated",
            "1.0.0 confirmed",
            "1.1.0 downloaded",
            "1.1.0 validated",
            "1.1.0 confirmed"
        ]
    );
}

/// The cost of an upload's streams for a firmware of about 200 KB with four earlier releases
/// to make deltas from (the agent firmware builds when `cargo xtask firmware` made them,
/// else synthetic images): printed, not asserted (`--ignored --nocapture`, best in release).
#[test]
#[ignore]
fn firmware_stream_cost() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/target/thumbv7em-none-eabihf/release"
    );
    let read = |name: &str| std::fs::read(format!("{dir}/{name}.bin")).ok();
    let synthetic = |seed: u32| -> Vec<u8> {
        (0..200_000u32)
            .map(|i| ((i / 7).wrapping_mul(2_654_435_761) >> 24) as u8 ^ (i % 977 == seed) as u8)
            .collect()
    };
    let target = read("agent-mps2").unwrap_or_else(|| synthetic(1));
    let bases: Vec<(i64, String, Vec<u8>)> = [
        "agent-mps2-bump",
        "agent-mps2-change",
        "agent-mps2-olddep",
        "agent-mps2-slow",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| {
        (
            i as i64,
            String::new(),
            read(n).unwrap_or_else(|| synthetic(i as u32 + 2)),
        )
    })
    .collect();
    let started = Instant::now();
    let made = fleet_server::streams::make(&target, &bases);
    println!(
        "{} bytes, {} streams ({:?} bytes) in {:?}",
        target.len(),
        made.len(),
        made.iter().map(|m| m.bytes.len()).collect::<Vec<_>>(),
        started.elapsed()
    );
}

/// Firmware: the delta is from the firmware release of the version the device reports for its
/// board, and a long-poll check-in answered when the rollout reaches the device carries the
/// same offer as a check-in answered at once.
#[test]
fn a_firmware_update_offers_the_delta_from_the_running_image_also_after_a_long_poll() {
    let s = support::start_polling(support::Backend::Sqlite, 10);
    let base = s.base.clone();
    let op = Operator::new(&base, &s.token);
    let credential = op.enroll("fw-1", "mps2-an386", &["fw"]).unwrap();
    let image1: Vec<u8> = (0..64 * 1024u32)
        .map(|i| ((i % 61) * 3 + (i / 4096)) as u8)
        .collect();
    let mut image2 = image1.clone();
    for i in (1000..image2.len()).step_by(9000) {
        image2[i] ^= 0x5a;
    }
    let firmware = |version, counter, image: &[u8]| {
        let r = testkit::release::firmware_release(0, version, counter, image);
        op.upload(artifact::bundle::write(&r.envelope, &[&r.payload]).unwrap())
            .unwrap()
    };
    let v1 = firmware(Version::new(1, 0, 0), 1, &image1);
    let v2 = firmware(Version::new(2, 0, 0), 2, &image2);
    let image1_sha: [u8; 32] = Sha256::digest(&image1).into();
    let delta = streams_of(&op, v2)
        .into_iter()
        .find(|st| st["base_artifact_id"] == v1)
        .expect("a delta from 1.0.0");

    // Waiting before the rollout exists: answered when its stage starts.
    let waiting = {
        let (base, credential) = (base.clone(), credential.clone());
        std::thread::spawn(move || {
            let c = CheckIn {
                device_id: "fw-1",
                board: "mps2-an386",
                firmware: Firmware {
                    version: Version::new(1, 0, 0),
                    status: BootStatus::Confirmed,
                },
                model: None,
                update: None,
                validation: None,
                counters: Counters::default(),
                runtime_abi: Some(2),
                wait_ms: Some(8_000),
                streams: Some(STREAM_FDL1),
            };
            let answer = post(&base, &credential, "checkin", protocol::to_vec(&c))
                .bytes()
                .unwrap();
            match ServerFrame::decode(&answer).unwrap() {
                ServerFrame::Command(Command::Update {
                    release, stream, ..
                }) => (release, stream),
                other => panic!("{other:?}"),
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    op.rollout(&json!({"artifact_id": v2, "selector": {"tags": ["fw"]}, "stages": ["100%"], "max_latency_ms": 10}))
        .unwrap();
    let (release, offer) = waiting.join().unwrap();
    assert_eq!(release, v2 as u64);
    let offer = offer.expect("a stream offer");
    assert_eq!(offer.base_sha256, Some(image1_sha));
    assert_eq!(offer.id, delta["id"].as_u64().unwrap());
    // A check-in answered at once: the same offer.
    let c = CheckIn {
        device_id: "fw-1",
        board: "mps2-an386",
        firmware: Firmware {
            version: Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        model: None,
        update: None,
        validation: None,
        counters: Counters::default(),
        runtime_abi: Some(2),
        wait_ms: None,
        streams: Some(STREAM_FDL1),
    };
    let answer = post(&base, &credential, "checkin", protocol::to_vec(&c))
        .bytes()
        .unwrap();
    match ServerFrame::decode(&answer).unwrap() {
        ServerFrame::Command(Command::Update { stream, .. }) => assert_eq!(stream, Some(offer)),
        other => panic!("{other:?}"),
    }
    let bytes = fetch_stream(&base, &credential, v2 as u64, &offer);
    assert_eq!(delta::decode::apply(&image1, &bytes).unwrap(), image2);
}
