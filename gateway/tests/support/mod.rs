//! Test support: a real fleet server in process, a signed model release and its rollout, a TCP
//! proxy between gateway and server that can be switched off, and test devices: the real agent
//! session over a strict NOR flash model, speaking the framed protocol to the gateway over TCP
//! as a QEMU board's UART bridge would.

#![allow(dead_code)] // each test uses part of it

use agent::{Agent, Identity, Next, Outgoing, Session};
use artifact::Version;
use bootloader::SharedFlash;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex as FlashMutex;
use fleet_sim::device::{BOARD, Flash, LAYOUT};
use fleet_sim::operator::Operator;
use protocol::link::{Deframer, MAX_ENCODED, MAX_PAYLOAD};
use protocol::{BootStatus, Command, DeviceFrame, Firmware, Hello, ServerFrame};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- server ------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub op: Operator,
    /// An HTTPS server's CA and the client certificate of gateway `GATEWAY`.
    pub tls: Option<Tls>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Tls {
    /// The CA of the server's certificate.
    pub ca: PathBuf,
    /// The client certificate of gateway `GATEWAY`, from the CA the server verifies them by.
    pub gateway: testkit::tls::Issued,
}

/// The gateway name of `Tls::gateway`'s certificate; devices tagged `gateway:GATEWAY` are
/// bound to it.
pub const GATEWAY: &str = "gw-1.line";

/// A server with the test trust root, devices polling every second, the engine every 200 ms.
pub fn server() -> Server {
    start(false, 1)
}

/// A plain HTTP server whose idle devices poll every `poll_seconds` (which also bounds how
/// long a long-poll check-in waits there).
pub fn server_polling(poll_seconds: u32) -> Server {
    start(false, poll_seconds)
}

/// The same over HTTPS, verifying gateways' client certificates (CAs made for the test).
pub fn tls_server() -> Server {
    start(true, 1)
}

fn start(tls: bool, poll_seconds: u32) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fleet_server::server::Config {
        listen: Some("127.0.0.1:0".into()),
        data: Some(dir.path().to_owned()),
        database_url: Some(dir.path().join("fleet.db").display().to_string()),
        poll_seconds: Some(poll_seconds),
        tick_ms: Some(200),
        workers: Some(2),
        ..Default::default()
    };
    let tls = tls.then(|| {
        let ca = testkit::tls::Ca::new(dir.path(), "fleet");
        let gateways = testkit::tls::Ca::new(dir.path(), "gateways");
        let cert = ca.server("server", testkit::tls::LOOPBACK);
        config.tls_cert = Some(cert.cert);
        config.tls_key = Some(cert.key);
        config.tls_client_ca = Some(gateways.pem.clone());
        Tls {
            ca: ca.pem,
            gateway: gateways.client("gateway", GATEWAY),
        }
    });
    let running =
        fleet_server::server::start_background(config, testkit::keys::trust_root()).unwrap();
    let addr = running
        .base
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let ca = tls.as_ref().map(|t| t.ca.as_path());
    Server {
        op: Operator::with_ca(&running.base, &running.admin_token, ca).unwrap(),
        base: running.base,
        addr,
        tls,
        _dir: dir,
    }
}

/// Enrols `id` on the emulated board; returns its credential. On an HTTPS server the device
/// is bound to gateway `GATEWAY`.
pub fn enroll(s: &Server, id: &str) -> String {
    let tag = format!("gateway:{GATEWAY}");
    let tags: &[&str] = match s.tls {
        Some(_) => &["line-1", &tag],
        None => &["line-1"],
    };
    s.op.enroll(id, BOARD, tags).unwrap()
}

/// The good model fixture as model "digits" 1.0.0: (artifact id, payload size in bytes).
pub fn upload_good(s: &Server) -> (i64, u64) {
    let f = &fleet_sim::fixtures::GOOD;
    let bundle = fleet_sim::release::model_bundle(
        f,
        "digits",
        Version::new(1, 0, 0),
        1,
        BOARD,
        fleet_sim::release::STRICT,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    let id = s.op.upload(bundle).unwrap();
    (id, (f.model.len() + f.set.len()) as u64)
}

/// A rollout of `artifact` to every enrolled device in one stage.
pub fn rollout(s: &Server, artifact: i64) -> i64 {
    s.op.rollout(&json!({
        "artifact_id": artifact,
        "stages": ["100%"],
        "soak_seconds": 0,
        "min_accuracy": 0.9,
        "max_latency_ms": 10,
    }))
    .unwrap()
}

/// The seqs of `device`'s reports as the server stored them.
pub fn server_reports(s: &Server, device: &str) -> Vec<u32> {
    s.op.get(&format!("/api/devices/{device}/reports"))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap() as u32)
        .collect()
}

// ---- gateway -----------------------------------------------------------------------------

pub fn gateway(server: &str, data: &Path, listen: &str) -> gateway::Handle {
    gateway::spawn(gateway::Config::new(server, data).listen(listen)).unwrap()
}

/// A gateway of `s` over HTTPS, trusting its CA and presenting gateway `GATEWAY`'s
/// certificate.
pub fn tls_gateway(s: &Server, data: &Path, listen: &str) -> gateway::Handle {
    let tls = s.tls.as_ref().expect("an HTTPS server");
    let mut config = gateway::Config::new(&s.base, data).listen(listen);
    config.ca_file = Some(tls.ca.clone());
    config.client_cert = Some((tls.gateway.cert.clone(), tls.gateway.key.clone()));
    gateway::spawn(config).unwrap()
}

/// Report files waiting in DATA/spool.
pub fn spooled_files(data: &Path) -> usize {
    files_under(&data.join("spool"), ".cbor")
}

pub fn files_under(dir: &Path, suffix: &str) -> usize {
    let Ok(devices) = std::fs::read_dir(dir) else {
        return 0;
    };
    devices
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(suffix)
        })
        .count()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- proxy -------------------------------------------------------------------------------

/// A TCP proxy to the server that can be switched off: when off it closes every connection and
/// refuses new ones, as a server that went away.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Debug, Default)]
struct ProxyState {
    up: AtomicBool,
    /// Go down on the first report on its way to the server (before a byte of it passes), so an
    /// outage starts at a known point of a rollout.
    down_at_report: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl ProxyState {
    fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        state.up.store(true, Ordering::SeqCst);
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if !st.up.load(Ordering::SeqCst) {
                    drop(client); // refused
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let st1 = st.clone();
                std::thread::spawn(move || pump(client, server, &st1, true));
                let st2 = st.clone();
                std::thread::spawn(move || pump(s2, c2, &st2, false));
            }
        });
        Proxy { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        if up {
            self.state.down_at_report.store(false, Ordering::SeqCst);
            self.state.up.store(true, Ordering::SeqCst);
        } else {
            self.state.go_down();
        }
    }

    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::SeqCst)
    }

    pub fn go_down_at_first_report(&self) {
        self.state.down_at_report.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.go_down();
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, st: &ProxyState, to_server: bool) {
    const MARK: &[u8] = b"POST /api/device/reports";
    let mut buf = vec![0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to_server && st.down_at_report.load(Ordering::SeqCst) {
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(MARK.len()).any(|w| w == MARK) {
                st.go_down();
                break;
            }
            let keep = tail.len().saturating_sub(MARK.len());
            tail.drain(..keep);
        }
        if !st.up.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---- wire helpers ------------------------------------------------------------------------

/// `frame` as it travels on a link.
pub fn framed(frame: &DeviceFrame<'_>) -> Vec<u8> {
    let mut msg = vec![0u8; MAX_PAYLOAD];
    let n = frame.encode(&mut msg).unwrap();
    link_bytes(&msg[..n])
}

/// Any payload as a link frame (COBS, CRC, delimiter).
pub fn link_bytes(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_ENCODED];
    let n = protocol::link::encode(payload, &mut out).unwrap();
    out.truncate(n);
    out
}

// ---- test devices ------------------------------------------------------------------------

/// What a test device shows.
#[derive(Debug, Clone, Default)]
pub struct DeviceStatus {
    pub model_version: Option<String>,
    /// Every acknowledgement received, in order.
    pub acked: Vec<u32>,
    /// The agent still holds an unacknowledged report.
    pub pending_report: bool,
    pub updates: u32,
    pub connects: u32,
}

impl DeviceStatus {
    /// Runs `version` with every report acknowledged.
    pub fn done(&self, version: &str) -> bool {
        self.model_version.as_deref() == Some(version) && !self.pending_report
    }

    pub fn acked_set(&self) -> Vec<u32> {
        let mut s = self.acked.clone();
        s.sort();
        s.dedup();
        s
    }
}

/// A device: the real agent and session over its own flash, on a thread, linked to the
/// gateway at `gateway` over TCP (reconnecting whenever the link drops).
#[derive(Debug)]
pub struct Device {
    pub id: String,
    status: Arc<Mutex<DeviceStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Device {
    pub fn start(id: &str, credential: &str, gateway: SocketAddr) -> Device {
        Device::start_decoding(id, credential, gateway, false)
    }

    /// [`Device::start`], with `streams`: the agent given a stream decoder, so that it says in
    /// its check-ins that it decodes FDL1 streams and takes the server's stream offers.
    pub fn start_decoding(
        id: &str,
        credential: &str,
        gateway: SocketAddr,
        streams: bool,
    ) -> Device {
        let status = Arc::new(Mutex::new(DeviceStatus::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (i, c, st, sp) = (
            id.to_owned(),
            credential.to_owned(),
            status.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("dev-{id}"))
            .stack_size(1024 * 1024)
            .spawn(move || run_device(&i, &c, gateway, streams, &st, &sp))
            .unwrap();
        Device {
            id: id.to_owned(),
            status,
            stop,
            thread: Some(thread),
        }
    }

    pub fn status(&self) -> DeviceStatus {
        self.status.lock().unwrap().clone()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_device(
    id: &str,
    credential: &str,
    gateway: SocketAddr,
    streams: bool,
    status: &Mutex<DeviceStatus>,
    stop: &AtomicBool,
) {
    let flash: SharedFlash<Flash> =
        FlashMutex::new(RefCell::new(Flash::new(LAYOUT.flash_size as usize)));
    let identity = Identity {
        device_id: id,
        board: BOARD,
        // Today's runtime, as the emulated board's agent firmware provides it.
        runtime_abi: testkit::device::identity().runtime_abi,
        arena_capacity: 64 * 1024,
    };
    let mut agent = Agent::open(&flash, LAYOUT, testkit::keys::trust_root(), identity).unwrap();
    if streams {
        agent.set_stream_decoder(Box::leak(Box::new(delta::Decoder::new())));
    }
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let firmware = Firmware {
        version: Version::new(1, 0, 0),
        status: BootStatus::Confirmed,
    };
    let mut session = Session::new(agent, firmware, 1, now());
    let mut link: Option<TcpStream> = None;
    let mut deframer = Box::new(Deframer::<MAX_ENCODED>::new());
    let mut msg = vec![0u8; MAX_PAYLOAD];
    let mut rx = vec![0u8; 4096];
    let mut arena = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        {
            let model = session
                .agent()
                .active()
                .map(|a| format!("{}.{}.{}", a.version.0, a.version.1, a.version.2));
            let pending = session.agent().report().is_some();
            let mut s = status.lock().unwrap();
            s.model_version = model;
            s.pending_report = pending;
        }
        if let Some(action) = session.take_action() {
            if action == Next::Validate {
                let result = fleet_sim::device::validate(&mut session, &flash, &mut arena, 1);
                let _ = session.after_action(result);
            }
            continue;
        }
        let Some(stream) = link.as_mut() else {
            match TcpStream::connect(gateway) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    s.set_nodelay(true).unwrap();
                    let hello = framed(&DeviceFrame::Hello(Hello {
                        device_id: id,
                        credential,
                    }));
                    if (&s).write_all(&hello).is_ok() {
                        status.lock().unwrap().connects += 1;
                        *deframer = Deframer::new();
                        link = Some(s);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
            continue;
        };
        let out = match session.poll_transmit(now()) {
            Some(Outgoing::CheckIn(c)) => Some(DeviceFrame::CheckIn(c).encode(&mut msg)),
            Some(Outgoing::ChunkRequest(r)) => Some(DeviceFrame::ChunkRequest(r).encode(&mut msg)),
            Some(Outgoing::Report(r)) => Some(DeviceFrame::Report(r).encode(&mut msg)),
            None => None,
        };
        if let Some(Ok(n)) = out {
            if stream.write_all(&link_bytes(&msg[..n])).is_err() {
                link = None;
                continue;
            }
        }
        match stream.read(&mut rx) {
            Ok(0) => link = None,
            Ok(n) => {
                for &b in &rx[..n] {
                    let Some(Ok(payload)) = deframer.push(b) else {
                        continue;
                    };
                    let Ok(frame) = ServerFrame::decode(payload) else {
                        continue;
                    };
                    {
                        let mut s = status.lock().unwrap();
                        match frame {
                            ServerFrame::Command(Command::Update { .. }) => s.updates += 1,
                            ServerFrame::ReportAck { seq } => s.acked.push(seq),
                            _ => {}
                        }
                    }
                    let _ = session.handle(&frame, now());
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => link = None,
        }
    }
}

// ---- pseudo-terminal ---------------------------------------------------------------------

/// A pseudo-terminal standing for a board's serial port: the master side (non-blocking) for
/// the test, and the path of the slave side for the gateway.
#[allow(unsafe_code)]
pub fn pty() -> (std::fs::File, std::path::PathBuf) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open("/dev/ptmx")
        .unwrap();
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `fd` is the open pty master owned by `master`, alive across these calls;
    // `ptsname_r` writes a NUL-terminated name of at most `name.len()` bytes into `name`.
    let ok = unsafe {
        libc::grantpt(fd) == 0
            && libc::unlockpt(fd) == 0
            && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
    };
    assert!(ok, "pty: {}", std::io::Error::last_os_error());
    let path: Vec<u8> = name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    (master, String::from_utf8(path).unwrap().into())
}
