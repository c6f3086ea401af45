//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver) against a real server with simulated devices. Sign in, start a rollout from the
//! page, watch it advance and complete, start one that halts by itself with the failed gate
//! named; a viewer sees no controls and the server refuses the viewer's action; a forged
//! cross-site request is refused; what devices report stays text. Screenshots go to
//! target/screenshots/. Needs FLEET_BROWSER_TESTS=1 (`cargo xtask ci` installs Chromium and sets
//! it); without it the test says so and checks nothing.

mod support;

use artifact::Version;
use fleet_sim::operator::Operator;
use fleet_sim::{Faults, Fleet, fixtures, release};
use serde_json::{Value, json};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        let port = support::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver)");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::blocking::Client::new(),
        };
        let until = Instant::now() + Duration::from_secs(20);
        while d.http.get(format!("{}/status", d.base)).send().is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|v| panic!("{method} {path}: {v}"))
    }

    /// The command's value, or the whole answer when WebDriver reports an error.
    fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().unwrap().json().unwrap();
        if v["value"]["error"].is_null() {
            Ok(v["value"].clone())
        } else {
            Err(v)
        }
    }

    fn session(&self, profile: &std::path::Path) -> Browser<'_> {
        let v = self.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.display())]
            }}}}),
        );
        Browser {
            driver: self,
            id: v["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .http
            .delete(format!("{}/session/{}", self.driver.base, self.id))
            .send();
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> Option<String> {
        let v: Value = self
            .driver
            .http
            .post(format!("{}/session/{}/element", self.driver.base, self.id))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits for an element to exist.
    fn wait(&self, css: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(
                Instant::now() < until,
                "no {css} in {}",
                self.call("GET", "/source", Value::Null)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of `css`. The page redraws itself every 2 s, so an element found may be replaced
    /// before its text is read: then it is found again.
    fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let e = self.wait(css);
            let path = format!("/session/{}/element/{e}/text", self.id);
            match self.driver.try_call("GET", &path, Value::Null) {
                Ok(v) => return v.as_str().unwrap_or_default().to_owned(),
                Err(v) if v["value"]["error"] == "stale element reference" => continue,
                Err(v) => panic!("GET {path}: {v}"),
            }
        }
        panic!("{css} kept being replaced")
    }

    /// Waits until `css`'s text is `want`, returning every distinct text seen on the way.
    fn wait_text(&self, css: &str, want: &str, timeout: Duration) -> Vec<String> {
        let until = Instant::now() + timeout;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let t = self.find(css).map(|_| self.text(css)).unwrap_or_default();
            if seen.last() != Some(&t) {
                seen.push(t.clone());
            }
            if t == want {
                return seen;
            }
            assert!(Instant::now() < until, "{css}: {seen:?}, never {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.wait(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn screenshot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", Value::Null);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), base64(png.as_str().unwrap())).unwrap();
    }

    fn sign_in(&self, base: &str, token: &str) {
        self.go(&format!("{base}/login"));
        self.type_into("#token", token);
        self.click("#signin");
        self.wait("#who");
    }

    fn cookie(&self, name: &str) -> String {
        self.call("GET", &format!("/cookie/{name}"), Value::Null)["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Standard base64 (the WebDriver screenshot encoding).
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Fills the page's rollout form and starts it.
fn start_rollout(b: &Browser<'_>, artifact: i64, stages: &str, soak: &str) {
    b.go_hash("#/rollouts");
    b.wait("#create-rollout");
    b.script(&format!(
        "document.getElementById('artifact').value = '{artifact}';"
    ));
    b.type_into("#stages", stages);
    b.type_into("#soak", soak);
    b.click("#create");
    b.wait("#state");
}

impl Browser<'_> {
    fn go_hash(&self, hash: &str) {
        self.script(&format!("location.hash = '{hash}';"));
    }
}

/// The verdicts the rollout page shows for the current stage's gates are the server's, gate by
/// gate (`ok`, `failed`, `-` while waiting); the page only renders them.
fn assert_page_verdicts_are_the_servers(b: &Browser<'_>, op: &Operator) {
    let id = b
        .script("return location.hash.split('/')[2]")
        .as_str()
        .unwrap()
        .to_owned();
    let v = op.get(&format!("/api/rollouts/{id}")).unwrap();
    let server: Vec<Value> = v["stages"][v["stage"].as_u64().unwrap() as usize]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| match g["verdict"].as_str().unwrap() {
            "waiting" => json!("-"),
            other => json!(other),
        })
        .collect();
    assert!(!server.is_empty(), "{v:#}");
    // The page redraws every 2 s: read again if a redraw replaced the table mid-read.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = b.script(
            "return [...document.querySelectorAll('#gates tbody tr')].map((r) => r.lastElementChild.textContent)",
        );
        if shown == Value::Array(server.clone()) {
            return;
        }
        assert!(Instant::now() < until, "page {shown}, server {server:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn operators_steer_rollouts_in_chromium() {
    if std::env::var("FLEET_BROWSER_TESTS").is_err() {
        eprintln!("FLEET_BROWSER_TESTS not set: the test command installs Chromium and sets it");
        return;
    }
    let running = support::start(support::Backend::Sqlite);
    let base = running.base.clone();
    let op = Operator::new(&base, &running.token);
    let fleet = Fleet::new(&base, testkit::keys::trust_root()).unwrap();
    fleet_sim::enroll_and_start(&fleet, &op, "node", 8, 2, Faults::default()).unwrap();
    // A device whose board (free text at enrolment) is markup: it must stay text.
    op.enroll("odd-1", "<script>window.pwned=1</script>", &[])
        .unwrap();
    let bundle =
        |f: &fixtures::Fixture, v: Version, c: u64| support::upload(&op, f, v, c, release::STRICT);
    let good = bundle(&fixtures::GOOD, Version::new(1, 0, 0), 1);
    let regressed = bundle(&fixtures::REGRESSED, Version::new(1, 1, 0), 2);
    let held = bundle(&fixtures::GOOD, Version::new(1, 2, 0), 3);
    let viewer = op
        .post("/api/tokens", &json!({"name": "watcher", "role": "viewer"}))
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let b = driver.session(profile.path());

    // A wrong token does not sign in.
    b.go(&format!("{base}/login"));
    b.type_into("#token", "not-a-token");
    b.click("#signin");
    // The refusal is a redirect to /login?failed: the old page's #signin may still be found
    // before the browser has followed it, so wait for the address itself.
    let until = Instant::now() + Duration::from_secs(20);
    while !b
        .script("return location.search")
        .as_str()
        .unwrap_or_default()
        .contains("failed")
    {
        assert!(Instant::now() < until, "a wrong token was not refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.wait("#signin");

    b.sign_in(&base, &running.token);
    assert_eq!(b.text("#who"), "admin (admin)");
    b.wait_text(
        "#devices-total",
        "9 enrolled, 8 online, 1 offline",
        Duration::from_secs(30),
    );
    b.screenshot("overview.png");

    // Devices: markup from a device is shown as text and never runs.
    b.go_hash("#/devices");
    b.wait("#devices");
    b.type_into("#filter", "odd");
    let until = Instant::now() + Duration::from_secs(10);
    while !b
        .text("#devices")
        .contains("<script>window.pwned=1</script>")
    {
        assert!(Instant::now() < until, "{}", b.text("#devices"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.script("return typeof window.pwned"), "undefined");
    b.type_into("#filter", "");

    // A rollout started from the page advances and completes.
    start_rollout(&b, good, "25%,100%", "1");
    let states = b.wait_text("#state", "completed", Duration::from_secs(120));
    assert!(states.contains(&"running".to_owned()), "{states:?}");
    let events = b.text("#events");
    assert!(events.contains("stage_passed"), "{events}");
    assert!(b.find("#accuracy-chart").is_some() && b.find("#latency-chart").is_some());
    assert_page_verdicts_are_the_servers(&b, &op);
    b.screenshot("rollout-completed.png");

    // One that halts by itself, the failed gate named, with its evidence.
    start_rollout(&b, regressed, "25%,100%", "0");
    b.wait_text("#state", "halted", Duration::from_secs(120));
    assert_eq!(b.text("#halted-gate"), "min_accuracy");
    let events = b.text("#events");
    assert!(events.contains("accuracy 5972 bp < 9000 bp"), "{events}");
    assert!(b.text("#gates").contains("failed"));
    assert_page_verdicts_are_the_servers(&b, &op);
    b.screenshot("rollout-halted.png");

    // The canaries that rejected it show the figures of the model they run, and the rejected
    // release apart, by version.
    b.go_hash("#/devices");
    b.wait("#devices");
    // (Clearing the field sends no input event: the earlier filter stays until typed over.)
    b.type_into("#filter", "node");
    let until = Instant::now() + Duration::from_secs(10);
    while !b.text("#devices").contains("1.1.0: 59.72% / ") {
        assert!(Instant::now() < until, "{}", b.text("#devices"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        b.text("#devices").contains("92.77%"),
        "{}",
        b.text("#devices")
    );

    // One held by a long soak, for the refusals below.
    start_rollout(&b, held, "2,100%", "3600");
    let held_id = b
        .script("return location.hash.split('/')[2]")
        .as_str()
        .unwrap()
        .to_owned();
    b.wait("#pause");
    b.go_hash("#/audit");
    b.wait("#audit");
    assert!(b.text("#audit").contains("rollout.create"));
    b.screenshot("audit.png");

    // A forged cross-site request: a page elsewhere posts to the server with the session
    // cookie, without the page's CSRF token.
    let session = b.cookie("fleet_session");
    let forged = reqwest::blocking::Client::new()
        .post(format!("{base}/api/rollouts/{held_id}/abort"))
        .header("cookie", format!("fleet_session={session}"))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().unwrap().contains("\"error\":\"csrf\""));
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_url = format!("http://localhost:{}/", evil.local_addr().unwrap().port());
    let target = format!("{base}/api/rollouts/{held_id}/abort");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in evil.incoming().take(2) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let page = format!(
                "<form id=f method=post action=\"{target}\"></form><script>document.getElementById('f').submit()</script>"
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    b.go(&evil_url);
    std::thread::sleep(Duration::from_secs(2));
    let state = op.get(&format!("/api/rollouts/{held_id}")).unwrap()["state"].clone();
    assert_eq!(state, "running", "the forged abort changed nothing");

    // A viewer sees no controls, and the server refuses the viewer's action anyway.
    let profile2 = tempfile::tempdir().unwrap();
    let v = driver.session(profile2.path());
    v.sign_in(&base, &viewer);
    assert_eq!(v.text("#who"), "watcher (viewer)");
    v.go_hash(&format!("#/rollouts/{held_id}"));
    v.wait("#state");
    assert!(v.find("#pause").is_none() && v.find("#abort").is_none());
    v.go_hash("#/rollouts");
    v.wait("#rollouts");
    assert!(v.find("#create-rollout").is_none());
    let refused = v.script(&format!(
        "return fetch('/session').then(r => r.json()).then(s => fetch('/api/rollouts/{held_id}/abort', {{method: 'POST', headers: {{'X-CSRF-Token': s.csrf}}}})).then(r => r.status)"
    ));
    assert_eq!(refused, 403);
    v.screenshot("viewer.png");
    let state = op.get(&format!("/api/rollouts/{held_id}")).unwrap()["state"].clone();
    assert_eq!(state, "running");
    fleet.stop();
}
