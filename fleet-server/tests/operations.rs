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
