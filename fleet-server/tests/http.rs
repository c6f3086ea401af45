//! The fleet server over real HTTP with SQLite, and a real agent session as the device: enrol,
//! upload a signed bundle, assign, and the device installs it through check-ins, chunks and
//! reports. Plus the refusals: unknown credentials, wrong roles, bad bundles, foreign artifacts.

use agent::{Agent, Next, Outgoing, Session};
use artifact::Version;
use protocol::{BootStatus, DeviceFrame, Firmware, ServerFrame};
use testkit::device::*;
use testkit::keys::trust_root as root;
use testkit::release::*;

mod support;

use support::{Backend, Server};

fn start() -> Server {
    support::start(Backend::Sqlite)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn bundle(r: &Release) -> Vec<u8> {
    artifact::bundle::write(&r.envelope, &[&r.payload]).unwrap()
}

fn enroll(s: &Server, id: &str) -> String {
    let resp = client()
        .post(format!("{}/api/devices", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"id":"{id}","board":"mps2-an386","tags":["line-1"]}}"#
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    v["credential"].as_str().unwrap().to_owned()
}

fn upload(s: &Server, bytes: Vec<u8>) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/api/artifacts", s.base))
        .bearer_auth(&s.token)
        .body(bytes)
        .send()
        .unwrap()
}

#[test]
fn a_device_installs_an_assigned_model_over_http() {
    let s = start();
    let credential = enroll(&s, "node-1");
    let r = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let resp = upload(&s, bundle(&r));
    assert_eq!(resp.status(), 201);
    let art: serde_json::Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    let id = art["id"].as_i64().unwrap();
    assert_eq!(
        (art["kind"].as_str(), art["version"].as_str()),
        (Some("model"), Some("1.0.0"))
    );
    let resp = client()
        .post(format!("{}/api/assignments", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"device_id":"node-1","artifact_id":{id}}}"#))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 204);

    // The device: the real agent and session, over HTTP.
    let flash = new_flash();
    let agent = Agent::open(&flash, LAYOUT, root(), identity_of("node-1")).unwrap();
    let mut session = Session::new(
        agent,
        Firmware {
            version: Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        1,
        0,
    );
    let http = client();
    let mut now = 0u64;
    for _ in 0..400 {
        if let Some(action) = session.take_action() {
            if action == Next::Validate {
                let a = session.agent();
                let region = a.region(a.inactive_slot());
                let slot = flash.lock(|f| {
                    f.borrow().bytes()[region.offset as usize..region.end() as usize].to_vec()
                });
                let mut arena = vec![0u8; 64 * 1024];
                let result =
                    session
                        .agent()
                        .validate(&slot, &mut arena, clock_for(&slot, model_size(&r)));
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
                now = session.next_wake_ms().max(now + 1);
                if session.agent().active().is_some() && session.agent().report().is_none() {
                    break;
                }
                continue;
            }
        };
        let resp = http
            .post(format!("{}/api/device/{path}", s.base))
            .bearer_auth(&credential)
            .body(buf[..n].to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let bytes = resp.bytes().unwrap();
        session
            .handle(&ServerFrame::decode(&bytes).unwrap(), now)
            .unwrap();
    }
    assert_eq!(session.agent().active().unwrap().version, (1, 0, 0));

    // The server saw every step once, and the device's new state at its next check-in.
    let reports: serde_json::Value = serde_json::from_str(
        &client()
            .get(format!("{}/api/devices/node-1/reports", s.base))
            .bearer_auth(&s.token)
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let steps: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["downloaded", "validated", "confirmed"]);
    let mut buf = vec![0u8; 512];
    let n = DeviceFrame::CheckIn(match session.poll_transmit(u64::MAX / 2) {
        Some(Outgoing::CheckIn(c)) => c,
        other => panic!("{other:?}"),
    })
    .encode(&mut buf)
    .unwrap();
    let body = match DeviceFrame::decode(&buf[..n]).unwrap() {
        DeviceFrame::CheckIn(c) => protocol::to_vec(&c),
        _ => unreachable!(),
    };
    let resp = http
        .post(format!("{}/api/device/checkin", s.base))
        .bearer_auth(&credential)
        .body(body)
        .send()
        .unwrap();
    match ServerFrame::decode(&resp.bytes().unwrap()).unwrap() {
        ServerFrame::Command(protocol::Command::Idle { .. }) => {}
        other => panic!("{other:?}"),
    }
    let devices: serde_json::Value = serde_json::from_str(
        &client()
            .get(format!("{}/api/devices", s.base))
            .bearer_auth(&s.token)
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(devices[0]["model_version"], "1.0.0");
    assert_eq!(devices[0]["last_accuracy_bp"], 9277);
}

#[test]
fn refusals() {
    let s = start();
    let credential = enroll(&s, "node-2");
    // Unknown device credential.
    let resp = client()
        .post(format!("{}/api/device/checkin", s.base))
        .bearer_auth("nope")
        .body(vec![0xa0])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Operator API without a token, with a wrong one.
    assert_eq!(
        client()
            .get(format!("{}/api/devices", s.base))
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(format!("{}/api/devices", s.base))
            .bearer_auth(&credential)
            .send()
            .unwrap()
            .status(),
        401,
        "a device credential is no operator token"
    );
    // Roles: a viewer reads and is refused every action; an operator cannot make tokens.
    let token_for = |role: &str| -> String {
        let resp = client()
            .post(format!("{}/api/tokens", s.base))
            .bearer_auth(&s.token)
            .json(&serde_json::json!({ "name": format!("{role}-1"), "role": role }))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json::<serde_json::Value>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let viewer = token_for("viewer");
    let operator = token_for("operator");
    let status = |method: &str, path: &str, token: &str, body: serde_json::Value| {
        let c = client();
        let req = match method {
            "GET" => c.get(format!("{}{path}", s.base)),
            _ => c.post(format!("{}{path}", s.base)).json(&body),
        };
        req.bearer_auth(token).send().unwrap().status().as_u16()
    };
    assert_eq!(
        status("GET", "/api/devices", &viewer, serde_json::Value::Null),
        200
    );
    assert_eq!(
        status("GET", "/api/audit", &viewer, serde_json::Value::Null),
        200
    );
    let enrol = serde_json::json!({"id": "node-9", "board": "mps2-an386"});
    assert_eq!(status("POST", "/api/devices", &viewer, enrol.clone()), 403);
    let rollout = serde_json::json!({"artifact_id": 1, "stages": ["100%"]});
    assert_eq!(status("POST", "/api/rollouts", &viewer, rollout), 403);
    assert_eq!(
        status(
            "POST",
            "/api/rollouts/1/pause",
            &viewer,
            serde_json::Value::Null
        ),
        403
    );
    let token = serde_json::json!({"name": "x", "role": "admin"});
    assert_eq!(status("POST", "/api/tokens", &operator, token), 403);
    assert_eq!(status("POST", "/api/devices", &operator, enrol), 201);
    // Every action is in the audit log, with who did it.
    let audit: serde_json::Value = client()
        .get(format!("{}/api/audit", s.base))
        .bearer_auth(&viewer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions[..3],
        [
            ("operator-1".to_owned(), "device.enroll".to_owned()),
            ("admin".to_owned(), "token.create".to_owned()),
            ("admin".to_owned(), "token.create".to_owned()),
        ]
    );
    // A bundle with a flipped bit, and one signed by an unknown key.
    let r = release(1, "good", Version::new(1, 0, 0), 1, "mps2-an386");
    let mut bad = bundle(&r);
    let n = bad.len();
    bad[n - 1] ^= 1;
    let resp = upload(&s, bad);
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .unwrap()
            .contains("\"error\":\"digest_mismatch\"")
    );
    let resp = upload(&s, b"this is not a bundle at all".to_vec());
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("\"error\":\"bad_magic\""));
    // Signed by a key the fleet's root does not know.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let fixture = fleet_sim::fixtures::GOOD;
    let foreign = fleet_sim::release::model_bundle(
        &fixture,
        "digits",
        Version::new(1, 0, 0),
        1,
        "mps2-an386",
        fleet_sim::release::STRICT,
        &[stranger],
    )
    .unwrap();
    let resp = upload(&s, foreign);
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("\"error\":\"unknown_key\""));
    // Signed by the fleet's key, for a board the fleet does not have.
    let other_board = fleet_sim::release::model_bundle(
        &fixture,
        "digits",
        Version::new(1, 0, 0),
        1,
        "esp32-c3",
        fleet_sim::release::STRICT,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    let resp = upload(&s, other_board);
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("\"error\":\"wrong_board\""));
    // Truncated: malformed.
    let mut cut = bundle(&r);
    cut.truncate(40);
    let resp = upload(&s, cut);
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("\"error\":\"truncated\""));
    // A device cannot fetch an artifact not assigned to it.
    let resp = upload(&s, bundle(&r));
    let id: serde_json::Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    let resp = client()
        .get(format!("{}/api/device/artifacts/{}", s.base, id["id"]))
        .bearer_auth(&credential)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Enrolling twice is a conflict; a malformed id is refused.
    let again = client()
        .post(format!("{}/api/devices", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(r#"{"id":"node-2","board":"mps2-an386"}"#)
        .send()
        .unwrap();
    assert_eq!(again.status(), 409);
    let bad_id = client()
        .post(format!("{}/api/devices", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(r#"{"id":"<script>","board":"mps2-an386"}"#)
        .send()
        .unwrap();
    assert_eq!(bad_id.status(), 422);
}
