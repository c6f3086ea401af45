//! Operations: the OpenAPI document matches the routes, /healthz, /metrics, and the
//! configuration file under flags.

mod support;

use fleet_server::api::{OPENAPI, OPERATOR_ROUTES};
use fleet_server::server::Config;
use std::collections::BTreeSet;

#[test]
fn the_openapi_document_describes_exactly_the_operator_routes() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = OPERATOR_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed);
    // Every reference resolves.
    let text = OPENAPI;
    for part in text.split("\"$ref\": \"#/components/").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        let (kind, name) = target.split_once('/').unwrap();
        assert!(doc["components"][kind][name].is_object(), "{target}");
    }

    let s = support::start(support::Backend::Sqlite);
    let served: serde_json::Value = reqwest::blocking::get(format!("{}/api/openapi.json", s.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(served, doc);
}

#[test]
fn health_and_metrics() {
    let s = support::start(support::Backend::Sqlite);
    let health = reqwest::blocking::get(format!("{}/healthz", s.base)).unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().unwrap(), r#"{"status":"ok"}"#);
    let op = fleet_sim::operator::Operator::new(&s.base, &s.token);
    op.enroll("node-01", "mps2-an386", &[]).unwrap();
    // One refused device request shows in the counters.
    let refused = reqwest::blocking::Client::new()
        .post(format!("{}/api/device/checkin", s.base))
        .bearer_auth("not-a-credential")
        .body(vec![0xa0])
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    let text = reqwest::blocking::get(format!("{}/metrics", s.base))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "fleet_devices 1",
        "fleet_devices_online 0",
        "fleet_device_auth_failures_total 1",
        "fleet_checkins_total 0",
        "fleet_rollouts{state=\"running\"} 0",
        "fleet_longpoll_waiting 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[test]
fn flags_override_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0:9000\"\ndata = \"/srv/fleet\"\npoll_seconds = 30\n",
    )
    .unwrap();
    let file = Config::from_file(&path).unwrap();
    let flags = Config {
        listen: Some("127.0.0.1:8081".into()),
        ..Config::default()
    };
    let c = flags.or(file);
    assert_eq!(c.listen(), "127.0.0.1:8081");
    assert_eq!(c.data(), std::path::PathBuf::from("/srv/fleet"));
    assert_eq!(c.poll_seconds, Some(30));
    assert_eq!(c.database_url(), "/srv/fleet/fleet.db");
    std::fs::write(&path, "listen = 8080\n").unwrap();
    let err = Config::from_file(&path).unwrap_err();
    assert!(format!("{err:#}").contains("invalid type"), "{err:#}");
    std::fs::write(&path, "colour = \"blue\"\n").unwrap();
    let err = Config::from_file(&path).unwrap_err();
    assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
}

#[test]
fn dashboard_sessions_need_the_csrf_token_to_act() {
    let s = support::start(support::Backend::Sqlite);
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session the page sends you to sign in.
    let resp = http.get(format!("{}/", s.base)).send().unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login");
    let resp = http
        .post(format!("{}/login", s.base))
        .form(&[("token", "wrong")])
        .send()
        .unwrap();
    assert_eq!(resp.headers()["location"], "/login?failed");
    let resp = http
        .post(format!("{}/login", s.base))
        .form(&[("token", s.token.as_str())])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{}/", s.base))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let me: serde_json::Value = http
        .get(format!("{}/session", s.base))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    let csrf = me["csrf"].as_str().unwrap();
    let enrol = |csrf: Option<&str>, id: &str| {
        let mut req = http
            .post(format!("{}/api/devices", s.base))
            .header("cookie", &cookie)
            .json(&serde_json::json!({"id": id, "board": "mps2-an386"}));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    let (status, body) = enrol(None, "n1");
    assert_eq!(status, 403);
    assert!(body.contains("\"error\":\"csrf\""), "{body}");
    assert_eq!(enrol(Some("forged"), "n1").0, 403);
    assert_eq!(enrol(Some(csrf), "n1").0, 201);
    // Reads need no CSRF token.
    let devices = http
        .get(format!("{}/api/devices", s.base))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(devices.status(), 200);
    // Signed out, the cookie is worthless.
    let out = http
        .post(format!("{}/logout", s.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(enrol(Some(csrf), "n2").0, 401);
}
