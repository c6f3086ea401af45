//! PostgreSQL over TLS: the server's database layer (`db::open`, the URL as operators write it)
//! against a short-lived PostgreSQL of the test's own: initdb in a temporary directory, `ssl=on`
//! with a server certificate from a CA made at test time, and a pg_hba.conf that accepts TCP
//! only over TLS. Runs where the other PostgreSQL tests run (FLEET_TEST_DATABASE_URL set, as
//! `cargo xtask ci` does), with Debian's PostgreSQL programs.

mod support;

use diesel::RunQueryDsl as _;
use fleet_server::db::{self, AnyConnection, DbPool};
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::tls::{Ca, LOOPBACK};

/// The directory of Debian's PostgreSQL programs (the newest installed major version).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: Debian's postgresql package (cargo xtask ci installs it)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let newest = versions
        .last()
        .expect("a PostgreSQL version in /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL program to its end, as the `postgres` user when we are root (the server
/// refuses to run as root); its output when it fails.
fn try_pg(program: &str, dir: &Path, args: &[&str]) -> Result<(), String> {
    let path = bin_dir().join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    let out = cmd
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn pg(program: &str, dir: &Path, args: &[&str]) {
    if let Err(e) = try_pg(program, dir, args) {
        panic!("{e}");
    }
}

/// A PostgreSQL cluster in a temporary directory that speaks TLS with a certificate of `ca`
/// and accepts TCP connections over TLS only; stopped and removed on drop.
struct TlsPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsPostgres {
    fn start(ca: &Ca, dir: tempfile::TempDir) -> TlsPostgres {
        let server = ca.server("pg-server", LOOPBACK);
        let data = dir.path().join("data");
        let port = support::free_port();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the test cluster's directory");
        }
        // The server refuses a key that others can read.
        std::fs::set_permissions(
            &server.key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let data_arg = data.display().to_string();
        pg(
            "initdb",
            dir.path(),
            &[
                "-D",
                &data_arg,
                "-A",
                "trust",
                "-U",
                "fleet",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        // TCP only over TLS: no `host` or `hostnossl` line, so a plain connection finds no entry.
        // 127.0.0.2 reaches the same server under a name its certificate does not have.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.0/8 trust\n",
        )
        .unwrap();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1, 127.0.0.2'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
            dir.path().display(),
            server.cert.display(),
            server.key.display(),
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        let log = dir.path().join("log").display().to_string();
        pg(
            "pg_ctl",
            dir.path(),
            &["-D", &data_arg, "-l", &log, "-w", "start"],
        );
        TlsPostgres { dir, port }
    }

    /// The URL of the cluster's `postgres` database with `params`, and a password (which trust
    /// authentication ignores) that no error may show.
    fn url(&self, params: &str) -> String {
        self.url_at("127.0.0.1", params)
    }

    /// The same at another address of the server.
    fn url_at(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://fleet:pw-never-shown@{host}:{}/postgres?{params}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        // Best effort (this may run while a failed assertion unwinds); the directory goes next.
        let _ = try_pg(
            "pg_ctl",
            self.dir.path(),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

/// Whether each of three connections of the pool, held at once, is encrypted, as the server
/// sees it.
fn encrypted(pool: &DbPool) -> Vec<bool> {
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.get().expect("a pooled connection");
        let AnyConnection::Postgresql(pg) = &mut *conn else {
            panic!("a PostgreSQL URL gave a SQLite connection");
        };
        let row: Ssl =
            diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .get_result(pg)
                .expect("pg_stat_ssl");
        answers.push(row.ssl);
        held.push(conn);
    }
    answers
}

/// `db::open`'s error for `url`, checked not to show the URL's password.
fn refusal(url: &str) -> String {
    let e = match db::open(url) {
        Ok(_) => panic!("{} was accepted", db::redacted(url)),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        !e.contains("pw-never-shown"),
        "the password in an error: {e}"
    );
    assert!(e.contains("fleet:***@127.0.0."), "the redacted URL: {e}");
    e
}

#[test]
fn sslmode_verify_full_and_require_on_a_tls_only_postgres() {
    if std::env::var("FLEET_TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: FLEET_TEST_DATABASE_URL is not set (cargo xtask ci sets it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pg");
    let other = Ca::new(dir.path(), "other");
    let server = TlsPostgres::start(&ca, dir);

    // verify-full with the CA that signed the server's certificate (for 127.0.0.1): connected,
    // migrated, and every connection of the pool encrypted.
    let verify_full = server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.pem.display()
    ));
    let pool = db::open(&verify_full).expect("verify-full with the server's CA");
    assert_eq!(encrypted(&pool), [true, true, true]);
    drop(pool);

    // verify-full with another CA: refused, the reason named.
    let e = refusal(&server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.pem.display()
    )));
    assert!(e.contains("certificate verify failed"), "{e}");

    // The right CA at an address the certificate does not name: verify-full checks the name,
    // verify-ca only the chain.
    let ca_param = format!("sslrootcert={}", ca.pem.display());
    let e = refusal(&server.url_at("127.0.0.2", &format!("sslmode=verify-full&{ca_param}")));
    assert!(e.contains("does not match host name \"127.0.0.2\""), "{e}");
    let pool = db::open(&server.url_at("127.0.0.2", &format!("sslmode=verify-ca&{ca_param}")))
        .expect("verify-ca at 127.0.0.2");
    assert_eq!(encrypted(&pool), [true, true, true]);
    drop(pool);

    // require (encrypted, certificate not checked): accepted by the TLS-only server.
    let pool = db::open(&server.url("sslmode=require")).expect("sslmode=require");
    assert_eq!(encrypted(&pool), [true, true, true]);
    drop(pool);

    // disable: the server has no entry for a plain connection.
    let e = refusal(&server.url("sslmode=disable"));
    assert!(
        e.contains("no pg_hba.conf entry") && e.contains("no encryption"),
        "{e}"
    );
}

#[test]
fn a_database_url_is_shown_without_its_password() {
    assert_eq!(
        db::redacted("postgres://fleet:s3cret@db.example:5432/fleet?sslmode=require"),
        "postgres://fleet:***@db.example:5432/fleet?sslmode=require"
    );
    assert_eq!(
        db::redacted("postgresql://fleet@db/fleet?password=s3cret&sslmode=verify-full"),
        "postgresql://fleet@db/fleet?password=***&sslmode=verify-full"
    );
    assert_eq!(
        db::redacted("postgres://u:p@ss@db?sslpassword=k&sslrootcert=/etc/ca.pem"),
        "postgres://u:***@db?sslpassword=***&sslrootcert=/etc/ca.pem"
    );
    assert_eq!(db::redacted("/srv/fleet/fleet.db"), "/srv/fleet/fleet.db");
}
