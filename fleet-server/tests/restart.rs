//! Killing the server with SIGKILL in the middle of a rollout and starting it again: the
//! rollout continues where it was, to completion, and no report is lost or counted twice.
//! Also: the lease that lets one server process at a time drive a rollout.

mod support;

use artifact::Version;
use fleet_sim::operator::Operator;
use fleet_sim::{Faults, Fleet, fixtures, release};
use serde_json::json;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &std::path::Path, port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_fleet-server"))
        .args(["serve", "--root"])
        .arg(dir.join("root.cbor"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--poll-seconds", "1", "--tick-ms", "200", "--workers", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz"))
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < until, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Process(child)
}

#[test]
fn a_rollout_survives_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("root.cbor"),
        testkit::keys::signed_trust_root(),
    )
    .unwrap();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port);
    let token = std::fs::read_to_string(dir.path().join("data/operator-token")).unwrap();
    let op = Operator::new(&base, &token);
    let fleet = Fleet::new(&base, testkit::keys::trust_root()).unwrap();
    fleet_sim::enroll_and_start(&fleet, &op, "node", 40, 4, Faults::default()).unwrap();
    let good = support::upload(
        &op,
        &fixtures::GOOD,
        Version::new(1, 0, 0),
        1,
        release::STRICT,
    );
    let id = op
        .rollout(&json!({
            "artifact_id": good,
            "stages": ["5%", "25%", "100%"],
            "soak_seconds": 1,
            "min_accuracy": 0.9,
        }))
        .unwrap();
    // Kill it while the second stage is under way.
    let until = Instant::now() + Duration::from_secs(120);
    while op.get(&format!("/api/rollouts/{id}")).unwrap()["stage"] != 1 {
        assert!(Instant::now() < until, "stage 2 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.0.kill(); // SIGKILL
    let _ = server.0.wait();
    std::thread::sleep(Duration::from_millis(500));
    server = serve(dir.path(), port);

    let v = op.wait_rollout(id, Duration::from_secs(180)).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "stage_started",
            "stage_passed",
            "stage_started",
            "stage_passed",
            "stage_started",
            "completed"
        ]
    );
    // Every device's steps for the release arrived exactly once, in order.
    for i in 0..40 {
        let reports = op
            .get(&format!("/api/devices/node-{:02}/reports", i + 1))
            .unwrap();
        let steps: Vec<&str> = reports
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["release_id"] == good)
            .map(|r| r["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["downloaded", "validated", "confirmed"],
            "node-{:02}",
            i + 1
        );
    }
    let until = Instant::now() + Duration::from_secs(60);
    while fleet
        .status()
        .values()
        .any(|s| s.model_version.as_deref() != Some("1.0.0"))
    {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(100));
    }
    fleet.stop();
    drop(server);
}

fn lease_is_exclusive(backend: support::Backend) {
    use fleet_server::rollout::engine::{LEASE_MS, lease};
    let s = support::start(backend);
    let op = Operator::new(&s.base, &s.token);
    op.enroll("node-01", "mps2-an386", &["line-1"]).unwrap();
    let good = support::upload(
        &op,
        &fixtures::GOOD,
        Version::new(1, 0, 0),
        1,
        release::STRICT,
    );
    let id = op
        .rollout(&json!({"artifact_id": good, "stages": ["100%"]}))
        .unwrap();
    let pool = fleet_server::db::open(&s.url).unwrap();
    let mut conn = pool.get().unwrap();
    // The test server's own engine holds it (or will): take it over only once it lapses.
    let far = fleet_server::store::now_ms() + 10 * LEASE_MS;
    assert!(
        lease(&mut conn, id, "a", far).unwrap(),
        "an expired lease is free"
    );
    assert!(!lease(&mut conn, id, "b", far).unwrap(), "held by a");
    assert!(
        lease(&mut conn, id, "a", far + 1).unwrap(),
        "a renews its own"
    );
    assert!(
        lease(&mut conn, id, "b", far + 1 + LEASE_MS + 1).unwrap(),
        "b takes over after a stopped renewing"
    );
}

#[test]
fn one_process_drives_a_rollout_at_a_time_on_sqlite() {
    lease_is_exclusive(support::Backend::Sqlite);
}

#[test]
fn one_process_drives_a_rollout_at_a_time_on_postgres() {
    if support::backends().contains(&support::Backend::Postgres) {
        lease_is_exclusive(support::Backend::Postgres);
    }
}

/// Two server processes on one PostgreSQL, devices split between them: the rollout advances
/// once per stage (one of them drives it at a time) and completes.
#[test]
fn two_servers_on_one_postgres_drive_a_rollout_once() {
    if !support::backends().contains(&support::Backend::Postgres) {
        eprintln!("FLEET_TEST_DATABASE_URL not set: the test command sets it");
        return;
    }
    use fleet_server::server::{Config, start_background};
    let url = support::postgres_schema();
    // One database and one data directory (shared storage for the artifact payloads).
    let data = tempfile::tempdir().unwrap();
    let start = || {
        start_background(
            Config {
                listen: Some("127.0.0.1:0".into()),
                data: Some(data.path().to_owned()),
                database_url: Some(url.clone()),
                poll_seconds: Some(1),
                tick_ms: Some(100),
                workers: Some(2),
                ..Config::default()
            },
            testkit::keys::trust_root(),
        )
        .unwrap()
    };
    let (a, b) = (start(), start());
    let op_a = Operator::new(&a.base, &a.admin_token);
    let op_b = Operator::new(&b.base, &b.admin_token);
    let fleet_a = Fleet::new(&a.base, testkit::keys::trust_root()).unwrap();
    let fleet_b = Fleet::new(&b.base, testkit::keys::trust_root()).unwrap();
    fleet_sim::enroll_and_start(&fleet_a, &op_a, "a", 10, 2, Faults::default()).unwrap();
    fleet_sim::enroll_and_start(&fleet_b, &op_b, "b", 10, 2, Faults::default()).unwrap();
    let good = support::upload(
        &op_a,
        &fixtures::GOOD,
        Version::new(1, 0, 0),
        1,
        release::STRICT,
    );
    let id = op_a
        .rollout(
            &json!({"artifact_id": good, "stages": ["10%", "50%", "100%"], "min_accuracy": 0.9}),
        )
        .unwrap();
    let v = op_b.wait_rollout(id, Duration::from_secs(120)).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "stage_started",
            "stage_passed",
            "stage_started",
            "stage_passed",
            "stage_started",
            "completed"
        ]
    );
    fleet_a.stop();
    fleet_b.stop();
}
