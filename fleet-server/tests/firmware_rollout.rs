//! A firmware rollout that halts sends the devices that confirmed it back to the last known
//! good firmware release (a firmware cannot go back by itself once confirmed): driven here by
//! a device speaking the protocol by hand, so that each message is explicit.

mod support;

use artifact::{ComponentKind, Version};
use fleet_sim::operator::Operator;
use protocol::{
    BootStatus, CheckIn, Command, Counters, Figures, Firmware, Report, ServerFrame, Step,
};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::release::firmware_release;

fn post(base: &str, credential: &str, path: &str, body: Vec<u8>) -> Vec<u8> {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/api/device/{path}"))
        .bearer_auth(credential)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().unwrap().to_vec()
}

fn check_in(base: &str, credential: &str, firmware: Version) -> Command<'static> {
    let c = CheckIn {
        device_id: "fw-1",
        board: "mps2-an386",
        firmware: Firmware {
            version: firmware,
            status: BootStatus::Confirmed,
        },
        model: None,
        update: None,
        validation: None,
        counters: Counters {
            boots: 1,
            inferences: 0,
            updates: 0,
            failures: 0,
            reverts: 0,
        },
        runtime_abi: Some(2),
        wait_ms: None,
        streams: None,
    };
    let answer = post(base, credential, "checkin", protocol::to_vec(&c));
    let answer: &'static [u8] = Box::leak(answer.into_boxed_slice());
    match ServerFrame::decode(answer).unwrap() {
        ServerFrame::Command(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_halted_firmware_rollout_sends_devices_to_the_last_good_release() {
    let s = support::start(support::Backend::Sqlite);
    let op = Operator::new(&s.base, &s.token);
    let credential = op.enroll("fw-1", "mps2-an386", &["line-1"]).unwrap();
    let upload = |version, counter, seed: u8| {
        let image: Vec<u8> = (0..4096u32).map(|i| (i as u8) ^ seed).collect();
        let r = firmware_release(0, version, counter, &image);
        op.upload(artifact::bundle::write(&r.envelope, &[&r.payload]).unwrap())
            .unwrap()
    };
    upload(Version::new(1, 0, 0), 1, 1);
    let v2 = upload(Version::new(2, 0, 0), 2, 2);
    // 1.0.0 signed again with 2.0.0's counter: the only way back the bootloader accepts.
    let v1 = upload(Version::new(1, 0, 0), 2, 1);
    assert!(matches!(
        check_in(&s.base, &credential, Version::new(1, 0, 0)),
        Command::Idle { .. }
    ));
    let id = op
        .rollout(&json!({"artifact_id": v2, "stages": ["100%"], "max_latency_ms": 10}))
        .unwrap();
    match check_in(&s.base, &credential, Version::new(1, 0, 0)) {
        Command::Update { release, .. } => assert_eq!(release, v2 as u64),
        other => panic!("{other:?}"),
    }
    // The device installs it, boots it, validates (too slow) and, its own policy allowing,
    // confirms it.
    let steps = [
        Step::Downloaded,
        Step::Installed,
        Step::Booted,
        Step::Validated(Figures {
            samples: 360,
            accuracy_bp: 9_277,
            p50_us: 14_000,
            p99_us: 14_500,
        }),
        Step::Confirmed,
    ];
    for (seq, step) in steps.into_iter().enumerate() {
        let r = Report {
            device_id: "fw-1",
            seq: seq as u32,
            release: v2 as u64,
            component: ComponentKind::Firmware,
            version: Version::new(2, 0, 0),
            step,
        };
        let ack = post(&s.base, &credential, "reports", protocol::to_vec(&r));
        assert_eq!(
            ServerFrame::decode(&ack).unwrap(),
            ServerFrame::ReportAck { seq: seq as u32 }
        );
    }
    let v = op.wait_rollout(id, Duration::from_secs(30)).unwrap();
    assert_eq!(v["state"], "halted");
    assert_eq!(v["halted_gate"], "max_p99_latency");
    assert_eq!(v["devices"][0]["state"], "reverting");
    // Running 2.0.0, it is offered 1.0.0 as signed again (not with counter 1, which its
    // bootloader would refuse), and not 2.0.0 again.
    match check_in(&s.base, &credential, Version::new(2, 0, 0)) {
        Command::Update { release, .. } => assert_eq!(release, v1 as u64),
        other => panic!("{other:?}"),
    }
    // Back on 1.0.0: done, and nothing more to do.
    assert!(matches!(
        check_in(&s.base, &credential, Version::new(1, 0, 0)),
        Command::Idle { .. }
    ));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v = op.get(&format!("/api/rollouts/{id}")).unwrap();
        if v["devices"][0]["state"] == "reverted" {
            break;
        }
        assert!(Instant::now() < until, "{v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
