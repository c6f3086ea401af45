//! The edge gateway: devices on byte-stream links (QEMU boards whose UART is bridged to a TCP
//! socket, real boards on serial ports) speak the framed device protocol to it; it speaks HTTP
//! to the fleet server's device API on their behalf. It caches each release once for all its
//! devices (`cache`) and keeps devices' reports on its own disk until the server has them
//! (`spool`), so a server outage or a gateway restart loses none.
//!
//! # Invariants
//!
//! - A report is acknowledged to the device only after it is durable on the gateway's disk.
//! - The cache serves a release only to devices the server assigned it to (as their last
//!   check-in through this gateway said, with the same credential).
//! - Every message type is `protocol`'s; the gateway defines none of its own.
//!
//! ```no_run
//! let gw = gateway::spawn(gateway::Config::new("http://127.0.0.1:8080", "/var/lib/gateway")
//!     .listen("127.0.0.1:7000"))?;
//! println!("{:?} {:?}", gw.addr(), gw.stats());
//! gw.shutdown();
//! # Ok::<(), anyhow::Error>(())
//! ```

mod cache;
mod durable;
mod link;
mod log;
mod serial;
mod spool;
mod stats;
mod upstream;

pub use stats::Stats;

use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a gateway serves and where it keeps its state.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP address to accept links on (`127.0.0.1:0` picks a free port); `None`: serial only.
    pub listen: Option<String>,
    /// Base URL of the fleet server, `http://host:port` or `https://host:port`.
    pub server: String,
    /// State directory: `cache/`, `spool/`, `rejected/`, `stats.json`.
    pub data: PathBuf,
    /// Serial ports of real boards, one link each.
    pub serial: Vec<PathBuf>,
    /// Timeout of a device's request to the server (below the device's own 10 s).
    pub request_timeout: Duration,
    /// CA certificates (PEM) of an `https://` server, trusted instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// The gateway's client certificate chain and its key (PEM), presented to the server
    /// (mTLS): the server maps it to this gateway, which may then speak for its devices.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// How long each idle board's long-poll check-in may wait at the server (protocol 1.2;
    /// the server bounds it by its poll interval); zero: boards poll on their own only.
    pub long_poll: Duration,
}

impl Config {
    /// A gateway for `server` keeping its state in `data`, with no links yet.
    pub fn new(server: &str, data: impl Into<PathBuf>) -> Config {
        Config {
            listen: None,
            server: server.to_owned(),
            data: data.into(),
            serial: Vec::new(),
            request_timeout: Duration::from_secs(8),
            ca_file: None,
            client_cert: None,
            long_poll: Duration::from_secs(30),
        }
    }

    /// Accepts TCP links on `addr`.
    pub fn listen(mut self, addr: &str) -> Config {
        self.listen = Some(addr.to_owned());
        self
    }
}

/// What every link and task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstream: Arc<upstream::Upstream>,
    pub(crate) cache: cache::Cache,
    pub(crate) spool: Arc<spool::Spool>,
    pub(crate) stats: Arc<stats::Counters>,
    pub(crate) long_poll: Duration,
}

/// A running gateway (its own thread and tokio runtime). Dropping it shuts it down.
#[derive(Debug)]
pub struct Handle {
    addr: Option<SocketAddr>,
    stats: Arc<stats::Counters>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// The TCP address links are accepted on (the real port when `listen` asked for port 0).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The counters now (including those loaded from an earlier run).
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// Stops accepting, closes every link, stops delivery, writes stats.json; returns the final
    /// counters.
    pub fn shutdown(mut self) -> Stats {
        self.stop();
        self.stats.snapshot()
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a gateway: prepares DATA (directories, leftovers of a crash, stats), binds the
/// listener, and runs everything on a thread of its own. Errors (an unusable DATA, an address
/// in use, a bad server URL) come back here, before anything runs.
pub fn spawn(config: Config) -> anyhow::Result<Handle> {
    let data = config.data.clone();
    durable::create_dir(&data).with_context(|| format!("creating {}", data.display()))?;
    let cache_dir = data.join("cache");
    durable::create_dir(&cache_dir).context("creating cache/")?;
    durable::remove_temps(&cache_dir).context("cleaning cache/")?;
    durable::remove_temps(&data).context("cleaning DATA")?;
    let stats = Arc::new(stats::Counters::load(&data));
    let upstream = Arc::new(upstream::Upstream::new(&config)?);
    let spool = Arc::new(spool::Spool::new(&data, upstream.clone(), stats.clone()));
    spool.prepare().context("preparing spool/")?;
    let shared = Arc::new(Shared {
        upstream,
        cache: cache::Cache::new(cache_dir),
        spool,
        stats: stats.clone(),
        long_poll: config.long_poll,
    });
    let listener = match &config.listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gateway")
        .build()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let serial = config.serial.clone();
    let thread = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || {
            runtime.block_on(run(shared, listener, serial, shutdown_rx));
            // Blocking file work still running (a report being synced) finishes; a link's
            // half-done request is dropped unanswered.
            runtime.shutdown_timeout(Duration::from_secs(5));
        })?;
    log::info(
        "gateway_started",
        &[
            ("listen", addr.map(|a| a.to_string()).unwrap_or_default()),
            ("server", config.server.clone()),
            ("data", data.display().to_string()),
        ],
    );
    Ok(Handle {
        addr,
        stats,
        shutdown,
        thread: Some(thread),
    })
}

async fn run(
    shared: Arc<Shared>,
    listener: Option<std::net::TcpListener>,
    serial: Vec<PathBuf>,
    mut shutdown: watch::Receiver<bool>,
) {
    let delivery = tokio::spawn(shared.spool.clone().run(shutdown.clone()));
    let stats_writer = tokio::spawn(shared.stats.clone().run(shutdown.clone()));
    let mut links = JoinSet::new();
    for path in serial {
        links.spawn(serial::run(path, shared.clone(), shutdown.clone()));
    }
    let listener = match listener.map(tokio::net::TcpListener::from_std).transpose() {
        Ok(l) => l,
        Err(e) => {
            log::warn("listen_failed", &[("error", e.to_string())]);
            None
        }
    };
    loop {
        tokio::select! {
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    links.spawn(async move {
                        link::serve(stream, &peer.to_string(), &shared).await;
                    });
                }
                // Out of descriptors and the like: wait a little instead of spinning.
                Err(e) => {
                    log::warn("accept_failed", &[("error", e.to_string())]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = links.join_next(), if !links.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Links first (a request half done is dropped: the device asks again), so the counters
    // written last are final.
    links.abort_all();
    while links.join_next().await.is_some() {}
    let _ = delivery.await;
    let _ = stats_writer.await;
    let stats = shared.stats.clone();
    match tokio::task::spawn_blocking(move || stats.write()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn("stats_write_failed", &[("error", e.to_string())]),
        Err(e) => log::warn("stats_write_failed", &[("error", e.to_string())]),
    }
    log::info("gateway_stopped", &[]);
}

async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
