//! The server's error boundary and its database writes under concurrency: bodies, paths and
//! queries that do not parse are answered in the API's own error shape; an internal error
//! answers an incident id and never its cause; concurrent inserts each get their own row back.

use artifact::{ComponentKind, Version};
use diesel::prelude::*;
use fleet_server::schema::artifacts;
use fleet_server::store::{self, NewArtifact};
use fleet_sim::operator::Operator;
use serde_json::{Value, json};

mod support;

use support::Backend;

fn answer(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

#[test]
fn unparsable_requests_are_answered_in_the_api_shape() {
    let s = support::start(Backend::Sqlite);
    let http = reqwest::blocking::Client::new();
    let (status, body) = answer(
        http.post(format!("{}/api/rollouts", s.base))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(r#"{"artifact_id": "seven", "stages": ["5%"]}"#)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_json", "{body}");
    assert_eq!(
        body["message"],
        "Json deserialize error: invalid type: string \"seven\", expected i64 at line 1 column 23",
        "the message says what was wrong and where"
    );
    let (status, body) = answer(
        http.post(format!("{}/api/rollouts", s.base))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(r#"{"artifact_id": 1, "stages": ["5%"], "colour": "red"}"#)
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body["error"]), (400, &json!("malformed_json")));
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (status, body) = answer(
        http.get(format!("{}/api/rollouts/seven", s.base))
            .bearer_auth(&s.token)
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body["error"]), (400, &json!("malformed_path")));
    // Valid JSON that the rollout rules refuse keeps its own code and status.
    let (status, body) = answer(
        http.post(format!("{}/api/rollouts", s.base))
            .bearer_auth(&s.token)
            .json(&json!({"artifact_id": 1, "stages": ["0%"]}))
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body["error"]), (422, &json!("invalid_rollout")));
}

#[test]
fn an_internal_error_answers_an_incident_id_not_its_cause() {
    let s = support::start(Backend::Sqlite);
    let op = Operator::new(&s.base, &s.token);
    op.enroll("node-1", "mps2-an386", &["line-1"]).unwrap();
    let release = support::upload(
        &op,
        &fleet_sim::fixtures::GOOD,
        Version::new(1, 0, 0),
        1,
        fleet_sim::release::STRICT,
    );
    let id = op
        .rollout(&json!({"artifact_id": release, "stages": ["100%"], "soak_seconds": 3600}))
        .unwrap();
    // A stored spec that no longer reads back, as a database edited by hand would hold.
    let mut conn = diesel::SqliteConnection::establish(&s.url).unwrap();
    diesel::sql_query("UPDATE rollouts SET spec = '{\"secret\": \"do not show\"'")
        .execute(&mut conn)
        .unwrap();
    let (status, body) = answer(
        reqwest::blocking::Client::new()
            .get(format!("{}/api/rollouts/{id}", s.base))
            .bearer_auth(&s.token)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 500);
    assert_eq!(body["error"], "internal");
    let incident = body["incident"].as_str().unwrap();
    assert_eq!(incident.len(), 12, "{body}");
    let message = body["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("internal error (incident {incident} in the server's log)")
    );
    assert!(!body.to_string().contains("spec"), "{body}");
}

fn new_artifact(thread: usize, i: usize) -> NewArtifact<'static> {
    NewArtifact {
        kind: ComponentKind::Model,
        name: "digits",
        version: format!("{thread}.{i}.0"),
        security_counter: 1,
        boards: "mps2-an386".into(),
        envelope: vec![0xa0],
        payload_sha256: format!("{thread:032x}{i:032x}"),
        payload_len: 1,
    }
}

/// What the store did before it used `RETURNING`: insert, then read the newest row back.
fn insert_then_read_newest(
    conn: &mut fleet_server::db::AnyConnection,
    a: &NewArtifact<'_>,
) -> QueryResult<String> {
    diesel::insert_into(artifacts::table)
        .values((
            artifacts::kind.eq(a.kind.as_str()),
            artifacts::name.eq(a.name),
            artifacts::version.eq(&a.version),
            artifacts::security_counter.eq(1i64),
            artifacts::boards.eq(&a.boards),
            artifacts::envelope.eq(&a.envelope),
            artifacts::payload_sha256.eq(&a.payload_sha256),
            artifacts::payload_len.eq(1i64),
            artifacts::created_ms.eq(0i64),
        ))
        .execute(conn)?;
    artifacts::table
        .order(artifacts::id.desc())
        .select(artifacts::version)
        .first(conn)
}

/// Eight writers at once: each stored artifact comes back as the row its writer inserted. The
/// read-back the store used before is run the same way and its mix-ups counted, to show what
/// `RETURNING` fixes (PostgreSQL interleaves the inserts; SQLite serialises its writers, but
/// not a write and the read after it).
fn concurrent_inserts_get_their_own_rows(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Postgres => support::postgres_schema(),
        Backend::Sqlite => dir.path().join("fleet.db").display().to_string(),
    };
    let pool = fleet_server::db::open(&url).unwrap();
    const THREADS: usize = 8;
    const EACH: usize = 40;
    let mut wrong_before = 0;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                let mut old_mixups = 0;
                for i in 0..EACH {
                    let a = new_artifact(t, i);
                    let stored = store::insert_artifact(&mut conn, &a).unwrap();
                    assert_eq!(
                        (stored.version.as_str(), stored.payload_sha256.as_str()),
                        (a.version.as_str(), a.payload_sha256.as_str())
                    );
                    let mut old = new_artifact(t + THREADS, i);
                    old.payload_sha256 = format!("old{}", old.payload_sha256);
                    if insert_then_read_newest(&mut conn, &old).unwrap() != old.version {
                        old_mixups += 1;
                    }
                }
                old_mixups
            })
        })
        .collect();
    for t in threads {
        wrong_before += t.join().unwrap();
    }
    eprintln!(
        "{backend:?}: insert-then-read-newest returned another writer's row {wrong_before} times \
         in {} inserts; RETURNING never",
        THREADS * EACH
    );
    let mut conn = pool.get().unwrap();
    assert_eq!(
        store::list_artifacts(&mut conn).unwrap().len(),
        2 * THREADS * EACH
    );
}

#[test]
fn concurrent_inserts_get_their_own_rows_on_sqlite() {
    concurrent_inserts_get_their_own_rows(Backend::Sqlite);
}

#[test]
fn concurrent_inserts_get_their_own_rows_on_postgres() {
    if !support::backends().contains(&Backend::Postgres) {
        eprintln!("FLEET_TEST_DATABASE_URL not set: the test command starts a PostgreSQL server");
        return;
    }
    concurrent_inserts_get_their_own_rows(Backend::Postgres);
}
