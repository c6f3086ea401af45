//! Check-in throughput and latency: a real server (the protocol's CBOR, SQLite or PostgreSQL)
//! and N simulated devices, each with its own credential and check-in message, checking in
//! from 64 concurrent connections for a fixed time, after one warm-up check-in each; over plain
//! HTTP, then over HTTPS (TLS 1.3, rustls on ring, a certificate of a CA made for the run) to
//! the same server and database, on kept-alive connections as gateways use them. Prints a
//! table and writes target/bench/server.json: {"runs":[{"backend","devices","checkins_per_s",
//! "p50_ms","p99_ms","tls_checkins_per_s","tls_p50_ms","tls_p99_ms"}]}.
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let pg = std::env::var("FLEET_TEST_DATABASE_URL").ok();
    let mut runs = Vec::new();
    for devices in [1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("fleet.db").display().to_string();
        runs.push(run("sqlite", url, devices, seconds));
        match &pg {
            Some(base) => runs.push(run("postgres", postgres_schema(base), devices, seconds)),
            None => eprintln!("FLEET_TEST_DATABASE_URL not set: PostgreSQL not measured"),
        }
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
