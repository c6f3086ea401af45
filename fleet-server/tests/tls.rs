//! TLS on a real server process (certificates from a CA made at test time): HTTPS for the
//! operator and device APIs; refused handshakes (plain HTTP and garbage on the TLS port, a
//! client that does not trust the server, a client certificate of an unknown CA or expired),
//! each with its log line and nothing served; a gateway's client certificate speaks for the
//! devices bound to it only, and for nothing but the device API; configuration errors.

mod support;

use artifact::Version;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::tls::{Ca, Issued, LOOPBACK};

struct Server {
    child: Child,
    base: String,
    addr: std::net::SocketAddr,
    token: String,
    log: PathBuf,
    ca: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The server's JSON log lines with `event`.
    fn events(&self, event: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits until `n` lines with `event` are logged (and checks no more come soon after).
    fn wait_count(&self, event: &str, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.events(event).len() < n {
            assert!(Instant::now() < until, "fewer than {n} {event}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(self.events(event).len(), n);
    }

    /// The server's check-in counter.
    fn checkins(&self) -> u64 {
        let text = client(&self.ca, None)
            .get(format!("{}/metrics", self.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("fleet_checkins_total "))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits for a log line with `event` whose reason is `reason`.
    fn wait_event(&self, event: &str, reason: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self
                .events(event)
                .into_iter()
                .find(|e| e["reason"].as_str().unwrap_or("").starts_with(reason))
            {
                return e;
            }
            assert!(
                Instant::now() < until,
                "no {event} {reason:?} in: {}",
                std::fs::read_to_string(&self.log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `fleet-server serve` over TLS with `server` and, for gateways, client certificates of
/// `client_ca`; waits until it answers over HTTPS trusting `ca`.
fn serve(dir: &Path, ca: &Path, server: &Issued, client_ca: Option<&Path>) -> Server {
    std::fs::write(dir.join("root.cbor"), testkit::keys::signed_trust_root()).unwrap();
    let port = support::free_port();
    let log = dir.join("server.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-server"));
    cmd.args(["serve", "--root"])
        .arg(dir.join("root.cbor"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "2"])
        .arg("--tls-cert")
        .arg(&server.cert)
        .arg("--tls-key")
        .arg(&server.key)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(c) = client_ca {
        cmd.arg("--tls-client-ca").arg(c);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let mut s = Server {
        child,
        base: base.clone(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        token: String::new(),
        log,
        ca: ca.to_owned(),
    };
    let client = client(ca, None);
    let until = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/healthz"))
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < until, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(dir.join("data/operator-token")).unwrap();
    s.token = token.trim().to_owned();
    s
}

/// A client trusting `ca` only, presenting `identity` when given.
fn client(ca: &Path, identity: Option<&Issued>) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10));
    for c in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
        b = b.add_root_certificate(c);
    }
    if let Some(i) = identity {
        let mut pem = std::fs::read(&i.cert).unwrap();
        pem.extend(std::fs::read(&i.key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The innermost cause of a failed request (rustls's words).
fn cause(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

fn check_in_body(device: &str) -> Vec<u8> {
    protocol::to_vec(&support::idle_check_in(device, Version::new(1, 0, 0)))
}

/// A check-in of `device`: the status and, when refused, the error code.
fn check_in(c: &reqwest::blocking::Client, s: &Server, device: &str, cred: &str) -> (u16, String) {
    let r = c
        .post(format!("{}/api/device/checkin", s.base))
        .bearer_auth(cred)
        .header("content-type", "application/cbor")
        .body(check_in_body(device))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let code = if status == 200 {
        String::new()
    } else {
        r.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (status, code)
}

fn operator(s: &Server) -> fleet_sim::operator::Operator {
    fleet_sim::operator::Operator::with_ca(&s.base, &s.token, Some(&s.ca)).unwrap()
}

/// What a raw TCP client gets back for `bytes` sent to the TLS port: never an HTTP answer.
fn raw_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    answer
}

#[test]
fn https_serves_both_apis_and_refuses_what_is_not_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let s = serve(dir.path(), &ca.pem, &ca.server("server", LOOPBACK), None);

    // The operator API and the device API over HTTPS.
    let op = operator(&s);
    let credential = op.enroll("tls-01", "mps2-an386", &["line-1"]).unwrap();
    assert_eq!(op.get("/api/whoami").unwrap()["role"], "admin");
    let c = client(&ca.pem, None);
    assert_eq!(
        check_in(&c, &s, "tls-01", &credential),
        (200, String::new())
    );

    // Plain HTTP on the TLS port: a TLS alert at most, never an HTTP answer, and a log line.
    let answer = raw_answer(s.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!answer.windows(4).any(|w| w == b"HTTP"), "{answer:?}");
    let e = s.wait_event("tls_handshake_refused", "received corrupt message");
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");

    // Garbage that looks like a TLS record (a handshake of nonsense): refused the same way.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    let answer = raw_answer(s.addr, &garbage);
    assert!(!answer.windows(4).any(|w| w == b"HTTP"), "{answer:?}");
    // A TLS alert record, or the connection closed.
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
    s.wait_count("tls_handshake_refused", 2);
    let reasons: Vec<Value> = s
        .events("tls_handshake_refused")
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            "received corrupt message of type InvalidContentType",
            "received corrupt message of type HandshakePayloadTooLarge"
        ]
    );

    // Nothing of these reached the API: the one check-in is the only one counted.
    assert_eq!(s.checkins(), 1);
}

#[test]
fn a_client_refuses_a_server_certificate_of_another_ca_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let other = Ca::new(dir.path(), "other");
    let s = serve(dir.path(), &ca.pem, &ca.server("server", LOOPBACK), None);
    let e = client(&other.pem, None)
        .get(format!("{}/healthz", s.base))
        .send()
        .unwrap_err();
    assert_eq!(cause(&e), "invalid peer certificate: UnknownIssuer");
    // The server saw the client give up on its certificate.
    s.wait_event("tls_handshake_refused", "received fatal alert: UnknownCA");
    // Through the operator client too: an error, not an answer.
    let op = fleet_sim::operator::Operator::with_ca(&s.base, &s.token, Some(&other.pem)).unwrap();
    assert!(op.get("/api/whoami").is_err());
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let expired = ca.expired_server("expired", LOOPBACK);
    // The server starts with it (an operator may be renewing it); clients refuse it.
    std::fs::write(
        dir.path().join("root.cbor"),
        testkit::keys::signed_trust_root(),
    )
    .unwrap();
    let port = support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-server"))
        .args(["serve", "--root"])
        .arg(dir.path().join("root.cbor"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&expired.cert)
        .arg("--tls-key")
        .arg(&expired.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = client(&ca.pem, None);
    let until = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        match c.get(format!("https://127.0.0.1:{port}/healthz")).send() {
            Err(e) if e.is_connect() && cause(&e).contains("Connection refused") => {
                assert!(Instant::now() < until, "server did not come up");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break cause(&e),
            Ok(r) => panic!("an expired certificate was trusted: {}", r.status()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        refused.starts_with("invalid peer certificate: certificate expired"),
        "{refused}"
    );
}

#[test]
fn client_certificates_of_an_unknown_ca_or_expired_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let gateways = Ca::new(dir.path(), "gateways");
    let rogue = Ca::new(dir.path(), "rogue");
    let s = serve(
        dir.path(),
        &ca.pem,
        &ca.server("server", LOOPBACK),
        Some(&gateways.pem),
    );
    let op = operator(&s);
    let credential = op
        .enroll("gw-dev-01", "mps2-an386", &["gateway:gw-1.line"])
        .unwrap();

    for (identity, reason) in [
        (
            rogue.client("rogue-gw", "gw-1.line"),
            "invalid peer certificate: UnknownIssuer",
        ),
        (
            gateways.expired_client("old-gw", "gw-1.line"),
            "invalid peer certificate: certificate expired",
        ),
    ] {
        let c = client(&ca.pem, Some(&identity));
        let sent = c
            .post(format!("{}/api/device/checkin", s.base))
            .bearer_auth(&credential)
            .body(check_in_body("gw-dev-01"))
            .send();
        assert!(sent.is_err(), "{identity:?} was served: {sent:?}");
        s.wait_event("tls_handshake_refused", reason);
    }
    // Nothing was served to either: no check-in counted.
    assert_eq!(s.checkins(), 0);
}

#[test]
fn a_gateway_certificate_speaks_for_its_own_devices_and_only_the_device_api() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let gateways = Ca::new(dir.path(), "gateways");
    let s = serve(
        dir.path(),
        &ca.pem,
        &ca.server("server", LOOPBACK),
        Some(&gateways.pem),
    );
    let op = operator(&s);
    let bound = op
        .enroll("bound-01", "mps2-an386", &["line-1", "gateway:gw-1.line"])
        .unwrap();
    let other = op
        .enroll("bound-02", "mps2-an386", &["gateway:gw-2.line"])
        .unwrap();
    let free = op.enroll("free-01", "mps2-an386", &["line-1"]).unwrap();
    let gw1 = client(&ca.pem, Some(&gateways.client("gw-1", "gw-1.line")));
    let stranger = client(&ca.pem, Some(&gateways.client("gw-9", "gw-9.line")));
    let plain = client(&ca.pem, None);

    // Its own device: served. Another gateway's, or one bound to none: refused.
    assert_eq!(check_in(&gw1, &s, "bound-01", &bound), (200, String::new()));
    assert_eq!(
        check_in(&gw1, &s, "bound-02", &other),
        (403, "wrong_gateway".into())
    );
    assert_eq!(
        check_in(&gw1, &s, "free-01", &free),
        (403, "wrong_gateway".into())
    );
    // A bound device's credential alone (no certificate) no longer suffices.
    assert_eq!(
        check_in(&plain, &s, "bound-01", &bound),
        (403, "gateway_required".into())
    );
    // A device bound to no gateway, without a certificate: as before.
    assert_eq!(check_in(&plain, &s, "free-01", &free), (200, String::new()));
    // An unknown gateway (a valid certificate naming a gateway no device is bound to).
    assert_eq!(
        check_in(&stranger, &s, "free-01", &free),
        (403, "unknown_gateway".into())
    );
    let e = s.wait_event(
        "gateway_refused",
        "client certificate of an unknown gateway",
    );
    assert_eq!(
        e["reason"],
        "client certificate of an unknown gateway (gw-9.line): no device is bound to it"
    );
    assert_eq!(e["device"], "free-01");
    s.wait_event(
        "gateway_refused",
        "device bound-01 is bound to gateway gw-1.line",
    );
    s.wait_event(
        "gateway_refused",
        "gateway gw-1.line does not speak for device bound-02 (bound to gw-2.line)",
    );

    // Nothing but the device API, even with an admin token: pages, operator API, metrics.
    for path in ["/", "/api/whoami", "/metrics", "/healthz"] {
        let r = stranger
            .get(format!("{}{path}", s.base))
            .bearer_auth(&s.token)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        assert_eq!(
            r.json::<Value>().unwrap()["error"],
            "device_api_only",
            "{path}"
        );
    }
    s.wait_event(
        "gateway_refused",
        "a gateway's client certificate (gw-9.line) is for the device API only, not /api/whoami",
    );
    // Exactly the two check-ins that were served are counted.
    assert_eq!(s.checkins(), 2);
}

#[test]
fn bad_tls_configuration_stops_the_server_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet");
    let server = ca.server("server", LOOPBACK);
    let other = ca.server("other", LOOPBACK);
    std::fs::write(
        dir.path().join("root.cbor"),
        testkit::keys::signed_trust_root(),
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let empty = dir.path().join("empty.pem");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleet-server"))
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(dir.path().join("root.cbor"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap().trim().to_owned()
    };
    let (cert, key) = (server.cert.as_os_str(), server.key.as_os_str());
    let flag = |f: &'static str| std::ffi::OsStr::new(f);
    assert_eq!(
        run(&[flag("--tls-cert"), cert]),
        "Error: --tls-cert needs --tls-key (FLEET_TLS_KEY, tls_key)"
    );
    assert_eq!(
        run(&[flag("--tls-client-ca"), ca.pem.as_os_str()]),
        "Error: --tls-client-ca needs --tls-cert and --tls-key: client certificates come with TLS"
    );
    assert_eq!(
        run(&[
            flag("--tls-cert"),
            empty.as_os_str(),
            flag("--tls-key"),
            key
        ]),
        format!("Error: {}: no PEM certificate in it", empty.display())
    );
    assert_eq!(
        run(&[
            flag("--tls-cert"),
            cert,
            flag("--tls-key"),
            empty.as_os_str()
        ]),
        format!(
            "Error: {}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)",
            empty.display()
        )
    );
    let mismatch = run(&[
        flag("--tls-cert"),
        cert,
        flag("--tls-key"),
        other.key.as_os_str(),
    ]);
    assert!(
        mismatch.starts_with(&format!(
            "Error: {} with {}: ",
            server.cert.display(),
            other.key.display()
        )),
        "{mismatch}"
    );
    // The same settings from the TOML file.
    let toml = dir.path().join("fleet.toml");
    std::fs::write(
        &toml,
        format!("tls_key = {:?}\n", server.key.display().to_string()),
    )
    .unwrap();
    assert_eq!(
        run(&[flag("--config"), toml.as_os_str()]),
        "Error: --tls-key needs --tls-cert (FLEET_TLS_CERT, tls_cert)"
    );
}
