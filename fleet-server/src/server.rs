//! Starting the server: configuration (flags, environment, file), the database, the operator
//! token, the rollout engine and the HTTP(S) server.

use crate::api::{AppState, configure};
use crate::metrics::Metrics;
use crate::{auth, db, rollout};
use anyhow::{Context, Result};
use artifact::TrustRoot;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything the server is configured with. Flags and environment variables override the
/// configuration file, which overrides the defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (127.0.0.1:8080).
    pub listen: Option<String>,
    /// Data directory: SQLite database, artifacts, operator token (./fleet-data).
    pub data: Option<PathBuf>,
    /// `postgres://...`; SQLite in DATA/fleet.db when absent.
    pub database_url: Option<String>,
    /// The fleet's trust root (`fleetctl keys root`).
    pub root: Option<PathBuf>,
    /// Seconds an idle device waits between check-ins (60).
    pub poll_seconds: Option<u32>,
    /// Milliseconds between rollout engine passes (1000).
    pub tick_ms: Option<u64>,
    /// HTTP worker threads (one per core by default).
    pub workers: Option<usize>,
    /// The largest bundle an operator may upload, in bytes (64 MiB).
    pub max_upload_bytes: Option<u64>,
    /// Seconds a client may take to send its request head, or leave its body unsent (10).
    pub read_timeout_s: Option<u64>,
    /// The server's certificate chain (PEM): serve HTTPS instead of plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that gateways' client certificates must chain to; a client
    /// certificate is then optional, and verified when presented.
    pub tls_client_ca: Option<PathBuf>,
}

impl Config {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        toml::from_str(&text).with_context(|| path.display().to_string())
    }

    /// `self` where set, else `base`.
    pub fn or(self, base: Config) -> Config {
        Config {
            listen: self.listen.or(base.listen),
            data: self.data.or(base.data),
            database_url: self.database_url.or(base.database_url),
            root: self.root.or(base.root),
            poll_seconds: self.poll_seconds.or(base.poll_seconds),
            tick_ms: self.tick_ms.or(base.tick_ms),
            workers: self.workers.or(base.workers),
            max_upload_bytes: self.max_upload_bytes.or(base.max_upload_bytes),
            read_timeout_s: self.read_timeout_s.or(base.read_timeout_s),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            tls_client_ca: self.tls_client_ca.or(base.tls_client_ca),
        }
    }

    /// The TLS configuration, when a certificate is configured; an incomplete one (a
    /// certificate without its key, a client CA without a certificate) is an error.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(
                cert,
                key,
                self.tls_client_ca.as_deref(),
            )?)),
            (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (FLEET_TLS_KEY, tls_key)"),
            (None, Some(_)) => {
                anyhow::bail!("--tls-key needs --tls-cert (FLEET_TLS_CERT, tls_cert)")
            }
            (None, None) if self.tls_client_ca.is_some() => {
                anyhow::bail!(
                    "--tls-client-ca needs --tls-cert and --tls-key: client certificates come with TLS"
                )
            }
            (None, None) => Ok(None),
        }
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes.unwrap_or(64 * 1024 * 1024)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_s.unwrap_or(10).max(1))
    }

    pub fn listen(&self) -> String {
        self.listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:8080".into())
    }

    pub fn data(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| "fleet-data".into())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| self.data().join("fleet.db").display().to_string())
    }
}

/// The admin token in DATA/operator-token, created (mode 0600) on first start.
pub fn operator_token(data: &Path) -> Result<String> {
    let path = data.join("operator-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    let token = auth::new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// A prepared server: state, admin token, and what `run` needs.
#[derive(Debug)]
pub struct Prepared {
    pub state: AppState,
    pub admin_token: String,
    pub config: Config,
    /// The listener's TLS, when configured (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Opens the data directory and the database (migrating it), installs the admin token and
/// starts the rollout engine.
pub fn prepare(config: Config, root: TrustRoot) -> Result<Prepared> {
    // Certificate files are checked before anything is created or migrated.
    let tls = config.tls()?;
    let data = config.data();
    std::fs::create_dir_all(&data).with_context(|| data.display().to_string())?;
    let pool = db::open(&config.database_url())?;
    let admin_token = operator_token(&data)?;
    auth::install(&mut *pool.get()?, "admin", auth::Role::Admin, &admin_token)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let owner = format!(
        "{}-{}",
        std::process::id(),
        auth::new_token().map_err(|e| anyhow::anyhow!("{e}"))?
    );
    let checkins = Arc::new(crate::checkins::Checkins::default());
    let waiters = Arc::new(crate::waiters::Waiters::default());
    crate::checkins::spawn_flusher(pool.clone(), checkins.clone(), Duration::from_millis(250))?;
    rollout::engine::spawn(
        pool.clone(),
        owner,
        Duration::from_millis(config.tick_ms.unwrap_or(1000)),
        checkins.clone(),
        waiters.clone(),
    )?;
    Ok(Prepared {
        state: AppState {
            pool,
            data,
            root,
            metrics: Arc::new(Metrics::default()),
            checkins,
            credentials: Arc::default(),
            poll_s: config.poll_seconds.unwrap_or(60),
            throttle: Arc::default(),
            waiters,
            max_upload: config.max_upload_bytes(),
            read_timeout: config.read_timeout(),
        },
        admin_token,
        config,
        tls,
    })
}

/// The largest JSON body of the operator API (a rollout with its tags is well under it): JSON
/// is parsed before the handler authenticates, so its bound is what anyone may make us hold.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// The largest form body (the dashboard's sign-in: one token).
pub const MAX_FORM_BODY: usize = 4 * 1024;

/// The application: every route over `state`, with the body bounds and error shapes.
pub fn app(
    state: AppState,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .wrap(actix_web::middleware::from_fn(
            crate::api::gateway_device_api_only,
        ))
        .app_data(actix_web::web::Data::new(state))
        // Bodies are read by the handlers after authentication (`body`); an extractor that
        // buffers one gets no more than a device message.
        .app_data(actix_web::web::PayloadConfig::new(
            crate::body::MAX_DEVICE_BODY,
        ))
        .app_data(
            actix_web::web::JsonConfig::default()
                .limit(MAX_JSON_BODY)
                .error_handler(|e, _| match e {
                    actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                    | actix_web::error::JsonPayloadError::Overflow { .. } => {
                        crate::error::ApiError::TooLarge {
                            what: "JSON body",
                            limit: MAX_JSON_BODY as u64,
                        }
                        .into()
                    }
                    e => crate::error::malformed("malformed_json", e),
                }),
        )
        .app_data(
            actix_web::web::FormConfig::default()
                .limit(MAX_FORM_BODY)
                .error_handler(|e, _| match e {
                    actix_web::error::UrlencodedError::Overflow { .. } => {
                        crate::error::ApiError::TooLarge {
                            what: "form body",
                            limit: MAX_FORM_BODY as u64,
                        }
                        .into()
                    }
                    e => crate::error::malformed("malformed_form", e),
                }),
        )
        .app_data(
            actix_web::web::PathConfig::default()
                .error_handler(|e, _| crate::error::malformed("malformed_path", e)),
        )
        .app_data(
            actix_web::web::QueryConfig::default()
                .error_handler(|e, _| crate::error::malformed("malformed_query", e)),
        )
        .configure(configure)
}

/// Binds the server, HTTPS when `tls` is given, else plain HTTP; returns it (to run) and the
/// address it listens on.
pub fn bind(
    state: AppState,
    listen: &str,
    workers: Option<usize>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let read_timeout = state.read_timeout;
    if let Some(tls) = tls {
        let lst = std::net::TcpListener::bind(listen).with_context(|| listen.to_owned())?;
        let addr = lst.local_addr()?;
        let mut builder = actix_server::Server::build();
        if let Some(w) = workers {
            builder = builder.workers(w);
        }
        let builder = crate::tls::listen(builder, lst, tls, state, read_timeout)
            .with_context(|| listen.to_owned())?;
        return Ok((builder.run(), addr));
    }
    let mut server = actix_web::HttpServer::new(move || app(state.clone()));
    // A client gets `read_timeout` for its request head (actix's own timer) and as much
    // between body pieces (`body`).
    // A client that hangs up ends its request: a long-poll check-in given up by its gateway
    // stops waiting then, not at its deadline (HTTP clients here never half-close).
    server = server
        .client_request_timeout(read_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .h1_allow_half_closed(false);
    if let Some(w) = workers {
        server = server.workers(w);
    }
    let server = server.bind(listen).with_context(|| listen.to_owned())?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

/// Reads a trust root file.
pub fn read_root(path: &Path) -> Result<TrustRoot> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    TrustRoot::from_self_signed(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A server running on its own thread (tests, tools that embed one).
#[derive(Debug, Clone)]
pub struct Background {
    /// `http://127.0.0.1:PORT`, or `https://` when TLS is configured.
    pub base: String,
    pub admin_token: String,
}

/// Prepares and starts a server on a thread of its own; returns when it accepts connections.
pub fn start_background(config: Config, root: TrustRoot) -> Result<Background> {
    let listen = config.listen();
    let prepared = prepare(config, root)?;
    let admin_token = prepared.admin_token.clone();
    let workers = prepared.config.workers;
    let scheme = if prepared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("fleet-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match bind(prepared.state, &listen, workers, prepared.tls) {
                    Ok((running, addr)) => {
                        let _ = tx.send(Ok(addr));
                        let _ = running.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
        })?;
    let addr = rx.recv().context("server thread")??;
    Ok(Background {
        base: format!("{scheme}://{addr}"),
        admin_token,
    })
}
