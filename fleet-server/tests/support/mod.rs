//! Test support: a real fleet server on a free port, over SQLite in a temporary directory or,
//! when FLEET_TEST_DATABASE_URL names a PostgreSQL server, in a fresh schema of its own.

#![allow(dead_code)] // each test binary uses part of it

use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;
use fleet_server::server::{self, Config};

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL too when the test command started one.
pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if std::env::var("FLEET_TEST_DATABASE_URL").is_ok() {
        b.push(Backend::Postgres);
    }
    b
}

/// A new schema on the test PostgreSQL server; the URL selects it for every connection.
pub fn postgres_schema() -> String {
    let url = std::env::var("FLEET_TEST_DATABASE_URL").expect("FLEET_TEST_DATABASE_URL");
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw).unwrap();
    let schema = format!("t_{}", hex::encode(raw));
    let mut conn = diesel::PgConnection::establish(&url).unwrap();
    conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

#[derive(Debug)]
pub struct Server {
    pub base: String,
    pub token: String,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The database the server uses.
    pub url: String,
}

/// Starts a server with the test trust root, devices polling every second and the rollout
/// engine passing every 200 ms.
pub fn start(backend: Backend) -> Server {
    start_polling(backend, 1)
}

/// `start`, with idle devices told to poll every `poll_seconds` (which also bounds a
/// long-poll check-in's wait).
pub fn start_polling(backend: Backend, poll_seconds: u32) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Postgres => postgres_schema(),
        Backend::Sqlite => dir.path().join("fleet.db").display().to_string(),
    };
    let config = Config {
        listen: Some("127.0.0.1:0".into()),
        data: Some(dir.path().to_owned()),
        database_url: Some(url.clone()),
        poll_seconds: Some(poll_seconds),
        tick_ms: Some(200),
        workers: Some(2),
        ..Config::default()
    };
    let running = server::start_background(config, testkit::keys::trust_root()).unwrap();
    let (base, token) = (running.base, running.admin_token);
    Server {
        base,
        token,
        dir,
        backend,
        url,
    }
}

/// Uploads fixture `f` as model "digits" `version`, signed with the test key; returns its id.
pub fn upload(
    op: &fleet_sim::operator::Operator,
    f: &fleet_sim::fixtures::Fixture,
    version: artifact::Version,
    counter: u64,
    policy: artifact::Policy,
) -> i64 {
    let bundle = fleet_sim::release::model_bundle(
        f,
        "digits",
        version,
        counter,
        "mps2-an386",
        policy,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    op.upload(bundle).unwrap()
}

/// A port nothing listens on now (for a server started by a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A check-in of `device` on confirmed `firmware`, runtime ABI 2, with no model and nothing
/// to report (a device that only says it is there).
pub fn idle_check_in(device: &str, firmware: artifact::Version) -> protocol::CheckIn<'_> {
    protocol::CheckIn {
        device_id: device,
        board: "mps2-an386",
        firmware: protocol::Firmware {
            version: firmware,
            status: protocol::BootStatus::Confirmed,
        },
        model: None,
        update: None,
        validation: None,
        counters: protocol::Counters::default(),
        runtime_abi: Some(2),
        wait_ms: None,
        streams: None,
    }
}
