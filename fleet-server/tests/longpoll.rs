//! Long-poll check-ins (protocol revision 1.2, `wait_ms`): a waiting check-in answers idle when
//! its wait passes (never beyond the poll interval), at once when a rollout's stage start gives
//! its device the release, and at once with the order to go back when a gate halts the
//! rollout its device confirmed; devices without a new command go on waiting.

mod support;

use artifact::{ComponentKind, Version};
use fleet_sim::fixtures;
use fleet_sim::operator::Operator;
use protocol::{Command, Figures, Report, RunningModel, ServerFrame, Step};
use serde_json::{Value, json};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::Backend;

/// What a check-in was answered, and when.
#[derive(Debug)]
struct Answer {
    device: String,
    command: Owned,
    at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Idle(u32),
    Update(u64),
    Revert(ComponentKind),
}

/// A check-in of `device` (running model `model` if given) that waits up to `wait_ms`, on a
/// thread; its answer comes on `tx`.
fn check_in(
    base: &str,
    credential: &str,
    device: &str,
    model: Option<Version>,
    wait_ms: Option<u32>,
    tx: &mpsc::Sender<Answer>,
) {
    let (url, credential, device, tx) = (
        format!("{base}/api/device/checkin"),
        credential.to_owned(),
        device.to_owned(),
        tx.clone(),
    );
    std::thread::spawn(move || {
        let mut c = support::idle_check_in(&device, Version::new(1, 0, 0));
        c.model = model.map(|version| RunningModel {
            name: "digits",
            version,
            slot: protocol::ModelSlot::B,
        });
        c.wait_ms = wait_ms;
        let body = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .post(url)
            .bearer_auth(credential)
            .body(protocol::to_vec(&c))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let command = match ServerFrame::decode(&body).unwrap() {
            ServerFrame::Command(Command::Idle { poll_after_s }) => Owned::Idle(poll_after_s),
            ServerFrame::Command(Command::Update { release, .. }) => Owned::Update(release),
            ServerFrame::Command(Command::Revert { component }) => Owned::Revert(component),
            other => panic!("{other:?}"),
        };
        let _ = tx.send(Answer {
            device: device.clone(),
            command,
            at: Instant::now(),
        });
    });
}

fn report(base: &str, credential: &str, r: &Report<'_>) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/api/device/reports"))
        .bearer_auth(credential)
        .body(protocol::to_vec(r))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// `n` devices tagged `longpoll`, with their credentials.
fn enroll(op: &Operator, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let id = format!("lp-{i}");
            let credential = op.enroll(&id, "mps2-an386", &["longpoll"]).unwrap();
            (id, credential)
        })
        .collect()
}

/// The devices of a rollout view in stage `stage`.
fn in_stage(v: &Value, stage: u64) -> Vec<String> {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["stage"] == stage)
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Lets the check-ins just sent reach the server and start waiting.
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn a_waiting_check_in_answers_idle_when_its_wait_passes_bounded_by_the_poll_interval() {
    let s = support::start_polling(Backend::Sqlite, 3);
    let op = Operator::new(&s.base, &s.token);
    let devices = enroll(&op, 3);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    check_in(
        &s.base,
        &devices[0].1,
        &devices[0].0,
        None,
        Some(1_000),
        &tx,
    );
    // Asking for more than the poll interval waits the poll interval (3 s), no longer.
    check_in(
        &s.base,
        &devices[1].1,
        &devices[1].0,
        None,
        Some(u32::MAX),
        &tx,
    );
    // Without the field (a device before 1.2): answered at once.
    check_in(&s.base, &devices[2].1, &devices[2].0, None, None, &tx);
    let mut got: Vec<(String, Owned, Duration)> = (0..3)
        .map(|_| {
            let a = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            (a.device, a.command, a.at - start)
        })
        .collect();
    got.sort_by_key(|g| g.2);
    assert_eq!(got[0].0, "lp-2");
    assert!(got[0].2 < Duration::from_millis(700), "{got:?}");
    assert_eq!(got[1].0, "lp-0");
    assert!(
        got[1].2 >= Duration::from_millis(1_000) && got[1].2 < Duration::from_millis(1_900),
        "{got:?}"
    );
    assert_eq!(got[2].0, "lp-1");
    assert!(
        got[2].2 >= Duration::from_millis(3_000) && got[2].2 < Duration::from_millis(3_900),
        "{got:?}"
    );
    for g in &got {
        assert_eq!(g.1, Owned::Idle(3), "{got:?}");
    }
}

#[test]
fn a_stage_start_answers_the_waiting_check_ins_of_its_devices_at_once() {
    let s = support::start_polling(Backend::Sqlite, 30);
    let op = Operator::new(&s.base, &s.token);
    let devices = enroll(&op, 2);
    let good = support::upload(
        &op,
        &fixtures::GOOD,
        Version::new(1, 1, 0),
        2,
        fleet_sim::release::LENIENT,
    );
    let (tx, rx) = mpsc::channel();
    for (id, credential) in &devices {
        check_in(&s.base, credential, id, None, Some(20_000), &tx);
    }
    settle();
    let created = Instant::now();
    let v = op
        .post(
            "/api/rollouts",
            &json!({"artifact_id": good, "selector": {"tags": ["longpoll"]},
                    "stages": ["1", "100%"]}),
        )
        .unwrap();
    let id = v["id"].as_i64().unwrap();
    let (canary, second) = (in_stage(&v, 0), in_stage(&v, 1));
    assert_eq!((canary.len(), second.len()), (1, 1), "{v}");
    // The first stage's device hears of it at once, not after its 20 s wait.
    let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (a.device.as_str(), &a.command),
        (canary[0].as_str(), &Owned::Update(good as u64))
    );
    let latency = a.at - created;
    eprintln!("stage 1 start to its waiting device: {latency:?}");
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    // The second stage's device was woken too, found nothing and goes on waiting.
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err());
    // The canary takes it: the engine's next pass (200 ms) starts stage 2, whose device is
    // answered at once.
    let credential = &devices.iter().find(|d| d.0 == canary[0]).unwrap().1;
    let figures = Figures {
        samples: 100,
        accuracy_bp: 9_500,
        p50_us: 900,
        p99_us: 1_000,
    };
    for (seq, step) in [(1, Step::Validated(figures)), (2, Step::Confirmed)] {
        report(
            &s.base,
            credential,
            &Report {
                device_id: &canary[0],
                seq,
                release: good as u64,
                component: ComponentKind::Model,
                version: Version::new(1, 1, 0),
                step,
            },
        );
    }
    let confirmed = Instant::now();
    let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (a.device.as_str(), &a.command),
        (second[0].as_str(), &Owned::Update(good as u64))
    );
    let latency = a.at - confirmed;
    eprintln!("canary confirmed to stage 2's waiting device: {latency:?}");
    assert!(latency < Duration::from_millis(1_000), "{latency:?}");
    let v = op.get(&format!("/api/rollouts/{id}")).unwrap();
    assert_eq!(v["stage"], 1, "{v}");
}

#[test]
fn a_halt_answers_the_waiting_canaries_with_the_order_to_go_back() {
    let s = support::start_polling(Backend::Sqlite, 30);
    let op = Operator::new(&s.base, &s.token);
    let devices = enroll(&op, 3);
    let v110 = Version::new(1, 1, 0);
    let good = support::upload(&op, &fixtures::GOOD, v110, 2, fleet_sim::release::LENIENT);
    let v = op
        .post(
            "/api/rollouts",
            &json!({"artifact_id": good, "selector": {"tags": ["longpoll"]},
                    "stages": ["2", "100%"], "min_accuracy": 0.9}),
        )
        .unwrap();
    let id = v["id"].as_i64().unwrap();
    let canaries = in_stage(&v, 0);
    let rest = in_stage(&v, 1);
    assert_eq!((canaries.len(), rest.len()), (2, 1), "{v}");
    let (tx, rx) = mpsc::channel();
    let cred = |id: &str| devices.iter().find(|d| d.0 == id).unwrap().1.clone();
    // The later stage's device waits 3 s: woken by the halt, it has nothing and answers idle.
    let started = Instant::now();
    check_in(&s.base, &cred(&rest[0]), &rest[0], None, Some(3_000), &tx);
    // Both canaries took the release and now wait, running it.
    for c in &canaries {
        check_in(&s.base, &cred(c), c, Some(v110), Some(20_000), &tx);
    }
    settle();
    // The second canary's figures fail the accuracy gate (0.9): the engine halts the rollout
    // at its next pass and sends both back.
    for (i, c) in canaries.iter().enumerate() {
        let accuracy_bp = if i == 0 { 9_500 } else { 5_000 };
        let figures = Figures {
            samples: 100,
            accuracy_bp,
            p50_us: 900,
            p99_us: 1_000,
        };
        for (seq, step) in [(1, Step::Validated(figures)), (2, Step::Confirmed)] {
            report(
                &s.base,
                &cred(c),
                &Report {
                    device_id: c,
                    seq,
                    release: good as u64,
                    component: ComponentKind::Model,
                    version: v110,
                    step,
                },
            );
        }
    }
    let reported = Instant::now();
    let mut back = Vec::new();
    for _ in 0..2 {
        let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(a.command, Owned::Revert(ComponentKind::Model), "{a:?}");
        let latency = a.at - reported;
        eprintln!("failing report to a waiting canary's revert: {latency:?}");
        assert!(latency < Duration::from_millis(1_000), "{latency:?}");
        back.push(a.device);
    }
    back.sort();
    let mut expected = canaries.clone();
    expected.sort();
    assert_eq!(back, expected);
    let v = op.get(&format!("/api/rollouts/{id}")).unwrap();
    assert_eq!(v["state"], "halted", "{v}");
    let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (a.device.as_str(), &a.command),
        (rest[0].as_str(), &Owned::Idle(30))
    );
    assert!(
        a.at - started >= Duration::from_millis(3_000),
        "{:?}",
        a.at - started
    );
}

/// The server's count of long-poll check-ins waiting now.
fn waiting(base: &str) -> u64 {
    reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fleet_longpoll_waiting "))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_check_in_whose_client_hangs_up_stops_waiting() {
    use std::io::Write;
    let s = support::start_polling(Backend::Sqlite, 30);
    let op = Operator::new(&s.base, &s.token);
    let (id, credential) = enroll(&op, 1).remove(0);
    let mut c = support::idle_check_in(&id, Version::new(1, 0, 0));
    c.wait_ms = Some(20_000);
    let body = protocol::to_vec(&c);
    let addr = s.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "POST /api/device/checkin HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {credential}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while waiting(&s.base) != 1 {
        assert!(Instant::now() < until, "never waited");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The gateway gave it up (its board spoke): the waiter goes, long before its 20 s.
    drop(conn);
    let hung_up = Instant::now();
    while waiting(&s.base) != 0 {
        assert!(hung_up.elapsed() < Duration::from_secs(2), "still waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}
