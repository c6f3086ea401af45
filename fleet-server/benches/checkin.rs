//! Check-in throughput and latency: a real server (the protocol's CBOR, SQLite or PostgreSQL)
//! and N simulated devices, each with its own credential and check-in message, checking in
//! from 64 concurrent connections for a fixed time, after one warm-up check-in each; over plain
//! HTTP, then over HTTPS (TLS 1.3, rustls on ring, a certificate of a CA made for the run) to
//! the same server and database, on kept-alive connections as gateways use them. Prints a
//! table and writes target/bench/server.json: {"runs":[{"backend","devices","checkins_per_s",
//! "p50_ms","p99_ms","tls_checkins_per_s","tls_p50_ms","tls_p99_ms"}]}.
//!
//! Then long-poll (protocol 1.2): a server process (SQLite) with 10 000 check-ins waiting at
//! once, each on its own connection; its resident memory before and while they wait, and the
//! time from a rollout to all of them until each is answered with the release. Fields
//! `longpoll_waiting`, `longpoll_rss_before_bytes`, `longpoll_rss_bytes`,
//! `longpoll_bytes_per_waiter`, `longpoll_create_ms`, `longpoll_wake_p50_ms`,
//! `longpoll_wake_p99_ms`, `longpoll_wake_max_ms` beside `runs`.
//!
//! `cargo bench -p fleet-server --bench checkin [-- --seconds N]`; PostgreSQL runs when
//! FLEET_TEST_DATABASE_URL is set (`cargo xtask bench-server` starts one).

use artifact::Version;
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;
use fleet_server::server::{self, Config};
use protocol::{BootStatus, CheckIn, Counters, Firmware, ModelSlot, RunningModel};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 64;

struct Run {
    backend: &'static str,
    devices: usize,
    plain: Measured,
    tls: Measured,
}

struct Measured {
    checkins_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn postgres_schema(url: &str) -> String {
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw).unwrap();
    let schema = format!("bench_{}", hex::encode(raw));
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Enrols `n` devices straight into the database; returns (credential, check-in body) each.
fn enrol(pool: &fleet_server::db::DbPool, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut conn = pool.get().unwrap();
    fleet_server::db::write_tx(&mut conn, |conn| {
        (0..n)
            .map(|i| {
                let id = format!("dev-{i:05}");
                let credential = fleet_server::store::new_credential().expect("random credential");
                fleet_server::store::enroll(conn, &id, "mps2-an386", "line-1", &credential)?;
                let c = CheckIn {
                    device_id: &id,
                    board: "mps2-an386",
                    firmware: Firmware {
                        version: Version::new(1, 0, 0),
                        status: BootStatus::Confirmed,
                    },
                    model: Some(RunningModel {
                        name: "digits",
                        version: Version::new(1, 0, 0),
                        slot: ModelSlot::A,
                    }),
                    update: None,
                    validation: None,
                    counters: Counters {
                        boots: 1,
                        inferences: i as u64,
                        updates: 1,
                        failures: 0,
                        reverts: 0,
                    },
                    runtime_abi: Some(2),
                    wait_ms: None,
                    streams: None,
                };
                Ok::<_, diesel::result::Error>((credential, protocol::to_vec(&c)))
            })
            .collect()
    })
    .unwrap()
}

fn run(backend: &'static str, url: String, devices: usize, seconds: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let ca = testkit::tls::Ca::new(dir.path(), "bench");
    let cert = ca.server("server", testkit::tls::LOOPBACK);
    let config = Config {
        data: Some(dir.path().to_owned()),
        database_url: Some(url),
        workers: Some(2),
        ..Config::default()
    };
    let tls = fleet_server::tls::server_config(&cert.cert, &cert.key, None).unwrap();
    let prepared = server::prepare(config, testkit::keys::trust_root()).unwrap();
    let fleet = Arc::new(enrol(&prepared.state.pool, devices));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            // One state, one database: a plain and a TLS listener.
            let state = prepared.state;
            let (plain, plain_addr) =
                server::bind(state.clone(), "127.0.0.1:0", Some(2), None).unwrap();
            let (tls, tls_addr) = server::bind(state, "127.0.0.1:0", Some(2), Some(tls)).unwrap();
            tx.send((plain_addr, tls_addr)).unwrap();
            let (a, b) = futures_util::future::join(plain, tls).await;
            a.unwrap();
            b.unwrap();
        })
    });
    let (plain_addr, tls_addr) = rx.recv().unwrap();
    let plain_client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let pem = std::fs::read(&ca.pem).unwrap();
    let tls_client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let plain = measure(
        plain_client,
        format!("http://{plain_addr}/api/device/checkin"),
        fleet.clone(),
        seconds,
    );
    let tls = measure(
        tls_client,
        format!("https://{tls_addr}/api/device/checkin"),
        fleet,
        seconds,
    );
    Run {
        backend,
        devices,
        plain,
        tls,
    }
}

fn measure(
    client: reqwest::Client,
    base: String,
    fleet: Arc<Vec<(String, Vec<u8>)>>,
    seconds: u64,
) -> Measured {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (count, mut latencies, elapsed) = rt.block_on(async move {
        // Steady state: every device has checked in once (its credential is known), and the
        // connections are open.
        for chunk in fleet.chunks(CONNECTIONS) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|(credential, body)| {
                    client
                        .post(&base)
                        .bearer_auth(credential)
                        .body(body.clone())
                        .send()
                })
                .collect();
            for s in sends {
                assert_eq!(s.await.unwrap().status(), 200);
            }
        }
        let start = Instant::now();
        let until = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|t| {
                let (client, base, fleet) = (client.clone(), base.clone(), fleet.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = t;
                    while Instant::now() < until {
                        let (credential, body) = &fleet[i % fleet.len()];
                        let sent = Instant::now();
                        let resp = client
                            .post(&base)
                            .bearer_auth(credential)
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(resp.status(), 200);
                        let answer = resp.bytes().await.unwrap();
                        assert!(protocol::ServerFrame::decode(&answer).is_ok());
                        lat.push(sent.elapsed().as_secs_f64() * 1000.0);
                        i += CONNECTIONS;
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all.len(), all, start.elapsed())
    });
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Measured {
        checkins_per_s: count as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// How many long-poll check-ins wait at once.
const WAITERS: usize = 10_000;

struct LongPoll {
    waiting: usize,
    rss_before: u64,
    rss: u64,
    create_ms: f64,
    wake_p50_ms: f64,
    wake_p99_ms: f64,
    wake_max_ms: f64,
}

/// Resident bytes of a process (`VmRSS` of /proc/PID/status).
fn rss_bytes(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// The open-file limit of this process, which the server inherits: each waiter is a socket on
/// both sides.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn long_poll() -> LongPoll {
    let limit = open_files_limit();
    assert!(
        limit >= WAITERS as u64 + 1_000,
        "{WAITERS} waiting check-ins need {} open files per process, the limit is {limit} (ulimit -n)",
        WAITERS + 1_000
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        dir.path().join("root.cbor"),
        testkit::keys::signed_trust_root(),
    )
    .unwrap();
    let url = data.join("fleet.db").display().to_string();
    let fleet = Arc::new(enrol(&fleet_server::db::open(&url).unwrap(), WAITERS));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-server"))
        .args(["serve", "--root"])
        .arg(dir.path().join("root.cbor"))
        .arg("--data")
        .arg(&data)
        .args(["--database-url", &url])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "2"])
        .args(["--poll-seconds", "300", "--tick-ms", "200"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _server = Child(child);
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/healthz"))
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < until, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(data.join("operator-token")).unwrap();
    let op = fleet_sim::operator::Operator::new(&base, token.trim());
    let bundle = fleet_sim::release::model_bundle(
        &fleet_sim::fixtures::GOOD,
        "digits",
        Version::new(1, 1, 0),
        2,
        "mps2-an386",
        fleet_sim::release::LENIENT,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    let release = op.upload(bundle).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let checkin = format!("{base}/api/device/checkin");
    rt.block_on(async {
        // Every device checked in once without waiting (its credential is cached), so what
        // grows next is what waiting costs.
        let client = reqwest::Client::new();
        for chunk in fleet.chunks(CONNECTIONS) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|(credential, body)| {
                    client
                        .post(&checkin)
                        .bearer_auth(credential)
                        .body(body.clone())
                        .send()
                })
                .collect();
            for s in sends {
                assert_eq!(s.await.unwrap().status(), 200);
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_bytes(pid);
    let (waiting, rss, create_ms, mut wakes) = rt.block_on(async {
        // One connection per waiter (no pooling: each is a device's, or a gateway's for it).
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(200))
            .build()
            .unwrap();
        let mut tasks = Vec::with_capacity(WAITERS);
        for (i, (credential, body)) in fleet.iter().enumerate() {
            let mut c: CheckIn = protocol::decode(body).unwrap();
            c.wait_ms = Some(120_000);
            let req = client
                .post(&checkin)
                .bearer_auth(credential)
                .body(protocol::to_vec(&c));
            tasks.push(tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status(), 200);
                let answer = resp.bytes().await.unwrap();
                let updated = matches!(
                    protocol::ServerFrame::decode(&answer),
                    Ok(protocol::ServerFrame::Command(
                        protocol::Command::Update { .. }
                    ))
                );
                (Instant::now(), updated)
            }));
            // Paced under the listen backlog.
            if i % 500 == 499 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let metrics = format!("{base}/metrics");
        let token = token.trim().to_owned();
        let until = Instant::now() + Duration::from_secs(120);
        let mut waiting = 0;
        while Instant::now() < until {
            let text = client
                .get(&metrics)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            waiting = text
                .lines()
                .find_map(|l| l.strip_prefix("fleet_longpoll_waiting "))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if waiting >= WAITERS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_bytes(pid);
        // A rollout to every waiting device at once: each answered with the release.
        let started = Instant::now();
        let spec = serde_json::json!({"artifact_id": release, "stages": ["100%"]});
        let created = client
            .post(format!("{base}/api/rollouts"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(spec.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let create_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut wakes = Vec::with_capacity(WAITERS);
        for t in tasks {
            let (at, updated) = t.await.unwrap();
            assert!(updated, "a waiter answered without the release");
            wakes.push((at - started).as_secs_f64() * 1000.0);
        }
        (waiting, rss, create_ms, wakes)
    });
    wakes.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| wakes[((wakes.len() as f64 * p) as usize).min(wakes.len() - 1)];
    LongPoll {
        waiting,
        rss_before,
        rss,
        create_ms,
        wake_p50_ms: pct(0.50),
        wake_p99_ms: pct(0.99),
        wake_max_ms: wakes[wakes.len() - 1],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    // Only the long-poll figures, printed (server.json is written by a whole run only).
    let longpoll_only = args.iter().any(|a| a == "--longpoll-only");
    let pg = std::env::var("FLEET_TEST_DATABASE_URL").ok();
    let mut runs = Vec::new();
    for devices in [1_000, 10_000].into_iter().filter(|_| !longpoll_only) {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("fleet.db").display().to_string();
        runs.push(run("sqlite", url, devices, seconds));
        match &pg {
            Some(base) => runs.push(run("postgres", postgres_schema(base), devices, seconds)),
            None => eprintln!("FLEET_TEST_DATABASE_URL not set: PostgreSQL not measured"),
        }
    }
    let lp = long_poll();
    let per_waiter = lp.rss.saturating_sub(lp.rss_before) / lp.waiting.max(1) as u64;
    println!(
        "long-poll: {} check-ins waiting; server resident {:.1} MB before, {:.1} MB while they wait ({per_waiter} bytes each); a rollout to all: created in {:.0} ms, answered p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
        lp.waiting,
        lp.rss_before as f64 / 1e6,
        lp.rss as f64 / 1e6,
        lp.create_ms,
        lp.wake_p50_ms,
        lp.wake_p99_ms,
        lp.wake_max_ms
    );
    if longpoll_only {
        return;
    }
    println!(
        "{:<10} {:>8} {:>14} {:>8} {:>8} {:>14} {:>8} {:>8}",
        "backend",
        "devices",
        "check-ins/s",
        "p50 ms",
        "p99 ms",
        "TLS check-ins/s",
        "p50 ms",
        "p99 ms"
    );
    for r in &runs {
        println!(
            "{:<10} {:>8} {:>14.0} {:>8.2} {:>8.2} {:>15.0} {:>8.2} {:>8.2}",
            r.backend,
            r.devices,
            r.plain.checkins_per_s,
            r.plain.p50_ms,
            r.plain.p99_ms,
            r.tls.checkins_per_s,
            r.tls.p50_ms,
            r.tls.p99_ms
        );
    }
    let ms = |v: f64| (v * 1000.0).round() / 1000.0;
    let per_s = |v: f64| (v * 10.0).round() / 10.0;
    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": seconds,
        "runs": runs.iter().map(|r| serde_json::json!({
            "backend": r.backend,
            "devices": r.devices,
            "checkins_per_s": per_s(r.plain.checkins_per_s),
            "p50_ms": ms(r.plain.p50_ms),
            "p99_ms": ms(r.plain.p99_ms),
            "tls_checkins_per_s": per_s(r.tls.checkins_per_s),
            "tls_p50_ms": ms(r.tls.p50_ms),
            "tls_p99_ms": ms(r.tls.p99_ms),
        })).collect::<Vec<_>>(),
        "longpoll_waiting": lp.waiting,
        "longpoll_rss_before_bytes": lp.rss_before,
        "longpoll_rss_bytes": lp.rss,
        "longpoll_bytes_per_waiter": per_waiter,
        "longpoll_create_ms": ms(lp.create_ms),
        "longpoll_wake_p50_ms": ms(lp.wake_p50_ms),
        "longpoll_wake_p99_ms": ms(lp.wake_p99_ms),
        "longpoll_wake_max_ms": ms(lp.wake_max_ms),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("server.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!("wrote target/bench/server.json");
}
