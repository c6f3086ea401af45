//! Bounded before authenticated: 64 concurrent 60 MB bodies without a credential against a real
//! server process (its peak resident memory measured), the sign-in and token throttle (429 and
//! `Retry-After`, per address and overall, each failure in the audit log), bodies over their
//! bound, and unparsable bodies answered in the API's error shape.

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kB figure of /proc/PID/status (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `len` bytes of body after `head` until the server stops taking them; returns the
/// status the server answered and the body bytes it took.
fn flood(addr: std::net::SocketAddr, head: String, len: u64) -> (u16, u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The answer comes while the body is still being sent: read it on another thread.
    let mut reader = s.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let answer = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let piece = vec![0x5Au8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len {
        let n = piece.len().min((len - sent) as usize);
        if s.write_all(&piece[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let text = answer.join().unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, sent)
}

#[test]
fn unauthenticated_60_mb_bodies_do_not_grow_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("root.cbor"),
        testkit::keys::signed_trust_root(),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_fleet-server"))
        .args(["serve", "--root"])
        .arg(dir.path().join("root.cbor"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _server = Process(child);
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/healthz"))
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < until, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm up every route once, so that what grows later is what the bodies cost.
    let client = reqwest::blocking::Client::new();
    for path in ["/api/device/checkin", "/api/artifacts", "/api/devices"] {
        client.post(format!("{base}{path}")).send().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline_kb = status_kb(pid, "VmRSS");

    // Each route a client without a credential may send a body to, and its answer.
    let routes: [(&str, &str, u16); 6] = [
        ("/api/device/checkin", "application/cbor", 401),
        ("/api/device/chunk", "application/cbor", 401),
        ("/api/device/reports", "application/cbor", 401),
        ("/api/artifacts", "application/octet-stream", 401),
        ("/api/devices", "application/json", 413),
        ("/login", "application/x-www-form-urlencoded", 413),
    ];
    const CLIENTS: usize = 64;
    const LEN: u64 = 60_000_000;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(baseline_kb));
    let sampler = {
        let (done, peak_rss) = (done.clone(), peak_rss.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_rss.fetch_max(status_kb(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (path, mime, want) = routes[i % routes.len()];
            let start = start.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {mime}\r\nContent-Length: {LEN}\r\n\r\n"
                );
                start.wait();
                let (status, sent) = flood(addr, head, LEN);
                (path, want, status, sent)
            })
        })
        .collect();
    let mut taken = 0u64;
    for c in clients {
        let (path, want, status, sent) = c.join().unwrap();
        assert_eq!(status, want, "{path}");
        taken += sent;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let hwm_kb = status_kb(pid, "VmHWM");
    let peak_kb = peak_rss.load(Ordering::Relaxed).max(hwm_kb);
    let growth_mb = (peak_kb.saturating_sub(baseline_kb)) as f64 / 1024.0;
    println!(
        "{CLIENTS} unauthenticated bodies of {LEN} bytes in {seconds:.2} s: server resident {} kB before, peak {} kB (VmHWM {hwm_kb} kB), growth {growth_mb:.1} MB; the clients got {} bytes of body written before the server closed",
        baseline_kb,
        peak_rss.load(Ordering::Relaxed),
        taken
    );
    assert!(growth_mb < 32.0, "server grew by {growth_mb:.1} MB");
    // And it still serves.
    assert!(
        reqwest::blocking::get(format!("{base}/healthz"))
            .unwrap()
            .status()
            .is_success()
    );
}

fn answer(resp: reqwest::blocking::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().unwrap_or(Value::Null);
    (status, retry, body)
}

/// A client whose connections come from `ip` (any 127/8 address reaches a loopback server).
fn client_from(ip: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn failed_sign_ins_and_tokens_are_throttled_per_address_and_audited() {
    let server = support::start(support::Backend::Sqlite);
    let base = &server.base;
    let limit = fleet_server::throttle::PER_ADDRESS;
    let window = fleet_server::throttle::WINDOW.as_secs().to_string();

    // Sign-in from one address: each wrong token sends the page back, then 429.
    let browser = client_from("127.0.0.3");
    for _ in 0..limit {
        let r = browser
            .post(format!("{base}/login"))
            .form(&[("token", "wrong")])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(r.headers()["location"], "/login?failed");
    }
    let (status, retry, body) = answer(
        browser
            .post(format!("{base}/login"))
            .form(&[("token", server.token.as_str())])
            .send()
            .unwrap(),
    );
    // The right token too: a lockout that let it through would tell a guesser it was right.
    assert_eq!((status, retry.as_deref()), (429, Some(window.as_str())));
    assert_eq!(body["error"], "throttled", "{body}");

    // Bearer tokens from another address: 401 each, then 429 for the API as well.
    let script = client_from("127.0.0.4");
    for _ in 0..limit {
        let (status, _, body) = answer(
            script
                .get(format!("{base}/api/devices"))
                .bearer_auth("0123456789")
                .send()
                .unwrap(),
        );
        assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    }
    let (status, retry, body) = answer(
        script
            .get(format!("{base}/api/devices"))
            .bearer_auth(&server.token)
            .send()
            .unwrap(),
    );
    assert_eq!((status, retry.as_deref()), (429, Some(window.as_str())));
    assert_eq!(body["error"], "throttled");

    // Other addresses are not locked out, and every failure is in the audit log.
    let (status, _, audit) = answer(
        client_from("127.0.0.1")
            .get(format!("{base}/api/audit"))
            .bearer_auth(&server.token)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    let count = |action: &str, address: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["target"] == address)
            .count()
    };
    assert_eq!(count("auth.sign_in_failure", "127.0.0.3"), limit);
    assert_eq!(count("auth.token_failure", "127.0.0.4"), limit);
}

#[test]
fn failures_from_many_addresses_lock_out_everyone() {
    let server = support::start(support::Backend::Sqlite);
    let base = &server.base;
    let (per, overall) = (
        fleet_server::throttle::PER_ADDRESS,
        fleet_server::throttle::OVERALL,
    );
    // Fewer than the per-address limit from each of enough addresses to reach the overall one.
    let each = per - 1;
    let mut made = 0;
    let mut i = 10;
    while made < overall {
        let c = client_from(&format!("127.0.1.{i}"));
        for _ in 0..each.min(overall - made) {
            let r = c
                .get(format!("{base}/api/whoami"))
                .bearer_auth("guess")
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 401);
            made += 1;
        }
        i += 1;
    }
    let (status, retry, _) = answer(
        client_from("127.0.2.1")
            .get(format!("{base}/api/whoami"))
            .bearer_auth(&server.token)
            .send()
            .unwrap(),
    );
    let window = fleet_server::throttle::WINDOW.as_secs().to_string();
    assert_eq!((status, retry.as_deref()), (429, Some(window.as_str())));
}

#[test]
fn bodies_over_their_bound_and_unparsable_ones_get_the_api_error_shape() {
    let server = support::start(support::Backend::Sqlite);
    let base = &server.base;
    let client = reqwest::blocking::Client::new();
    let op = fleet_sim::operator::Operator::new(base, &server.token);
    let credential = op.enroll("d1", "mps2-an386", &[]).unwrap();

    // A device message longer than the protocol's largest, with a good credential.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/api/device/checkin"))
            .bearer_auth(&credential)
            .body(vec![0u8; fleet_server::body::MAX_DEVICE_BODY + 1])
            .send()
            .unwrap(),
    );
    assert_eq!(status, 413);
    assert_eq!(
        body,
        json!({"error": "too_large", "message": format!("device message over {} bytes", fleet_server::body::MAX_DEVICE_BODY)})
    );
    // A device message that is not one.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/api/device/checkin"))
            .bearer_auth(&credential)
            .body(vec![0xFFu8; 16])
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body["error"]), (422, &json!("bad_message")));

    // JSON that does not parse, JSON over its bound, a form that does not parse.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/api/rollouts"))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body("{\"artifact_id\": ")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_json");
    assert!(body["message"].as_str().unwrap().contains("EOF"), "{body}");
    let (status, _, body) = answer(
        client
            .post(format!("{base}/api/devices"))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(vec![b' '; fleet_server::server::MAX_JSON_BODY + 1])
            .send()
            .unwrap(),
    );
    assert_eq!(
        (status, body),
        (
            413,
            json!({"error": "too_large", "message": format!("JSON body over {} bytes", fleet_server::server::MAX_JSON_BODY)})
        )
    );
    let (status, _, body) = answer(
        client
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("nothing=here")
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body["error"]), (400, &json!("malformed_form")));
}

#[test]
fn an_upload_over_the_configured_maximum_is_refused_after_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet_server::server::Config {
        listen: Some("127.0.0.1:0".into()),
        data: Some(dir.path().to_owned()),
        max_upload_bytes: Some(100_000),
        workers: Some(1),
        ..Default::default()
    };
    let running =
        fleet_server::server::start_background(config, testkit::keys::trust_root()).unwrap();
    let client = reqwest::blocking::Client::new();
    let upload = |token: Option<&str>, len: usize| {
        let mut r = client
            .post(format!("{}/api/artifacts", running.base))
            .body(vec![0u8; len]);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        answer(r.send().unwrap())
    };
    let (status, _, body) = upload(None, 200_000);
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    let (status, _, body) = upload(Some(&running.admin_token), 200_000);
    assert_eq!(
        (status, body),
        (
            413,
            json!({"error": "too_large", "message": "bundle over 100000 bytes"})
        )
    );
    // Under the maximum it is read, and refused for what it is (not a bundle).
    let (status, _, body) = upload(Some(&running.admin_token), 1000);
    assert_eq!(status, 422, "{body}");
    // Nothing is left behind in DATA/uploads.
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_client_that_stops_sending_is_cut_off_after_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet_server::server::Config {
        listen: Some("127.0.0.1:0".into()),
        data: Some(dir.path().to_owned()),
        read_timeout_s: Some(1),
        workers: Some(1),
        ..Default::default()
    };
    let running =
        fleet_server::server::start_background(config, testkit::keys::trust_root()).unwrap();
    let op = fleet_sim::operator::Operator::new(&running.base, &running.admin_token);
    let credential = op.enroll("slow", "mps2-an386", &[]).unwrap();
    let addr = running.base.strip_prefix("http://").unwrap().to_owned();
    let stall = |head: String| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        s.write_all(head.as_bytes()).unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        (got, started.elapsed())
    };
    // Half a body, then nothing: 408 in the API's shape, after about the timeout.
    let (got, took) = stall(format!(
        "POST /api/device/checkin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\nContent-Length: 100\r\n\r\n0123456789"
    ));
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#""error":"read_timeout""#), "{got}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Half a request head: actix's own timer answers 408 and closes.
    let (got, took) = stall("POST /api/device/checkin HTTP/1.1\r\nHost: x\r\n".into());
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
