//! Rollout creation says how many selected devices cannot run a model's runtime ABI: devices
//! on today's firmware (ABI 2), on older firmware (ABI 1), one that checks in without saying
//! its ABI (protocol revision 1.0) and one that never checked in; on SQLite and PostgreSQL.

mod support;

use artifact::Version;
use fleet_sim::device::{BOARD, RUNTIME_ABI};
use fleet_sim::operator::Operator;
use fleet_sim::{DeviceConfig, Faults, Fleet, fixtures, release};
use protocol::{BootStatus, CheckIn, Counters, Firmware};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Uploads the good fixture as "digits" `version` requiring runtime ABI `required_abi`.
fn upload_requiring(op: &Operator, version: Version, required_abi: u32) -> i64 {
    let bundle = release::model_bundle_requiring(
        &fixtures::GOOD,
        "digits",
        version,
        1,
        BOARD,
        release::LENIENT,
        &[testkit::keys::signing_key()],
        required_abi,
    )
    .unwrap();
    op.upload(bundle).unwrap()
}

/// A check-in of a device on firmware before revision 1.1: no runtime ABI in it.
fn check_in_without_abi(base: &str, id: &str, credential: &str) {
    let c = CheckIn {
        device_id: id,
        board: BOARD,
        firmware: Firmware {
            version: Version::new(0, 9, 0),
            status: BootStatus::Confirmed,
        },
        model: None,
        update: None,
        validation: None,
        counters: Counters::default(),
        runtime_abi: None,
        wait_ms: None,
        streams: None,
    };
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/api/device/checkin"))
        .bearer_auth(credential)
        .body(protocol::to_vec(&c))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Each device's runtime ABI as the device list shows it.
fn abis(op: &Operator) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = op
        .get("/api/devices")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["runtime_abi"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn spec(artifact: i64) -> Value {
    json!({
        "artifact_id": artifact,
        "stages": ["100%"],
        "soak_seconds": 0,
        "min_accuracy": 0.5,
        "max_latency_ms": 1000,
    })
}

#[test]
fn rollout_creation_counts_devices_too_old_and_of_unknown_abi() {
    assert_eq!(RUNTIME_ABI, 2);
    for backend in support::backends() {
        let s = support::start(backend);
        let op = Operator::new(&s.base, &s.token);
        let fleet = Fleet::new(&s.base, testkit::keys::trust_root()).unwrap();
        for (id, abi) in [
            ("new-1", 2),
            ("new-2", 2),
            ("new-3", 2),
            ("old-1", 1),
            ("old-2", 1),
        ] {
            let credential = op.enroll(id, BOARD, &["line-1"]).unwrap();
            fleet
                .spawn(DeviceConfig {
                    id: id.into(),
                    credential,
                    board: BOARD,
                    slowdown: 1,
                    runtime_abi: abi,
                    faults: Faults::default(),
                })
                .unwrap();
        }
        let credential = op.enroll("rev10-1", BOARD, &["line-1"]).unwrap();
        check_in_without_abi(&s.base, "rev10-1", &credential);
        op.enroll("silent-1", BOARD, &["line-1"]).unwrap();
        let expected = vec![
            ("new-1".to_owned(), json!(2)),
            ("new-2".to_owned(), json!(2)),
            ("new-3".to_owned(), json!(2)),
            ("old-1".to_owned(), json!(1)),
            ("old-2".to_owned(), json!(1)),
            ("rev10-1".to_owned(), Value::Null),
            ("silent-1".to_owned(), Value::Null),
        ];
        let until = Instant::now() + Duration::from_secs(30);
        while abis(&op) != expected {
            assert!(Instant::now() < until, "{backend:?}: {:?}", abis(&op));
            std::thread::sleep(Duration::from_millis(100));
        }

        // A model needing ABI 2: the two devices on ABI 1 cannot run it, two are unknown.
        let needs_2 = upload_requiring(&op, Version::new(2, 0, 0), 2);
        let created = op.post("/api/rollouts", &spec(needs_2)).unwrap();
        assert_eq!(
            created["compatibility"],
            json!({"required_abi": 2, "too_old": 2, "unknown": 2}),
            "{backend:?}"
        );
        let id = created["id"].as_i64().unwrap();
        assert_eq!(
            created["events"][0]["detail"],
            "model digits 2.0.0 to 7 devices in stages of 7 (by admin); 2 cannot run runtime \
             ABI 2 (older firmware), 2 of unknown ABI"
        );
        // A later read of the rollout is its view, without the creation's answer.
        assert_eq!(
            op.get(&format!("/api/rollouts/{id}"))
                .unwrap()
                .get("compatibility"),
            None
        );
        op.post(&format!("/api/rollouts/{id}/abort"), &json!({}))
            .unwrap();

        // A model needing ABI 1 runs on all of them; the unknown ones stay unknown.
        let needs_1 = upload_requiring(&op, Version::new(2, 1, 0), 1);
        let created = op.post("/api/rollouts", &spec(needs_1)).unwrap();
        assert_eq!(
            created["compatibility"],
            json!({"required_abi": 1, "too_old": 0, "unknown": 2}),
            "{backend:?}"
        );
        fleet.stop();
    }
}
