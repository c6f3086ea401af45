//! Storage: SQLite (embedded, the default) or PostgreSQL through one diesel code path, a pool,
//! and the migrations of the backend in use, run at start.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// One connection type for both backends.
#[derive(diesel::MultiConnection)]
#[allow(missing_debug_implementations)] // diesel's connections have no Debug
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<AnyConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<AnyConnection>>;

/// SQLite needs its pragmas on every connection: WAL for concurrent readers, a busy timeout
/// instead of immediate "database is locked", foreign keys on.
#[derive(Debug, Clone, Copy)]
struct Pragmas;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            c.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens the pool for `url` (`sqlite://PATH` or a file path; `postgres://...`) and migrates.
///
/// A PostgreSQL URL goes to libpq as it is, so its connection parameters apply: `sslmode`
/// (`require`, `verify-ca`, `verify-full`), `sslrootcert` (a CA file, or `system`),
/// `sslcert`/`sslkey`, `options`, `connect_timeout`... Errors name the URL without its password.
pub fn open(url: &str) -> anyhow::Result<DbPool> {
    let url = url.strip_prefix("sqlite://").unwrap_or(url).to_owned();
    if url.starts_with("postgres") {
        // AnyConnection hides PostgreSQL's own error; try once directly for a clear message.
        PgConnection::establish(&url).map_err(|e| {
            anyhow::anyhow!(
                "PostgreSQL at {}: {}",
                redacted(&url),
                e.to_string().trim_end()
            )
        })?;
    }
    let manager = ConnectionManager::<AnyConnection>::new(url);
    let pool = Pool::builder()
        .max_size(8)
        .connection_customizer(Box::new(Pragmas))
        .build(manager)?;
    let mut conn = pool.get()?;
    match &mut *conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    }
    .map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
    Ok(pool)
}

/// `url` fit for a log line or an error: the password of a `postgres://user:password@host` URL
/// and the values of its `password` and `sslpassword` parameters replaced by `***`. Anything
/// else (a SQLite path) is returned as it is.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the path or the query; the user information at its last '@'.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{key}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Runs `f` in a write transaction. On SQLite it begins `IMMEDIATE`: a deferred transaction
/// that reads and then writes fails at once with "database is locked" when another writer got
/// there first (the busy timeout cannot help it); an immediate one waits its turn. Nested
/// calls become savepoints.
pub fn write_tx<T, E>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let AnyConnection::Sqlite(c) = conn else {
        return conn.transaction(f);
    };
    match AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE") {
        Ok(()) => {}
        Err(diesel::result::Error::AlreadyInTransaction) => return conn.transaction(f),
        Err(e) => return Err(e.into()),
    }
    match f(conn) {
        Ok(v) => {
            if let AnyConnection::Sqlite(c) = conn {
                AnsiTransactionManager::commit_transaction(c)?;
            }
            Ok(v)
        }
        Err(e) => {
            if let AnyConnection::Sqlite(c) = conn {
                // The error that caused the rollback is the one to report.
                let _ = AnsiTransactionManager::rollback_transaction(c);
            }
            Err(e)
        }
    }
}
