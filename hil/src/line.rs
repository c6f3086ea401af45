//! A production line in the loop: the fleet server and the gateway as processes of their own
//! (so that the scenarios can kill and restart them), and N boards whose UARTs the gateway
//! serves; an operator client of the server.

use crate::board::Board;
use anyhow::{Context, Result, bail};
use fleet_sim::operator::Operator;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub gateway: PathBuf,
    pub bootloader: PathBuf,
    /// Raw binaries of the agent firmware: good, slow (fails its trial), hanging.
    pub agent: PathBuf,
    pub agent_slow: PathBuf,
    pub agent_hang: PathBuf,
    /// The good firmware with one function changed (feature `bench-change`).
    pub agent_changed: PathBuf,
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Kills a child process on drop.
#[derive(Debug)]
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
pub struct Line {
    pub dir: PathBuf,
    pub bins: Binaries,
    pub server_port: u16,
    pub gateway_port: u16,
    server: Option<Process>,
    gateway: Option<Process>,
    pub op: Operator,
    pub boards: Vec<Board>,
    /// Figures the scenarios measured, by name, for `hil.json`.
    pub figures: std::collections::BTreeMap<&'static str, f64>,
}

impl Line {
    /// Starts the server (with the emulated boards' test trust root) and the gateway.
    pub fn start(dir: &Path, bins: Binaries) -> Result<Line> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("root.cbor"), testkit::keys::signed_trust_root())?;
        let server_port = free_port()?;
        let gateway_port = free_port()?;
        let mut line = Line {
            dir: dir.to_owned(),
            bins,
            server_port,
            gateway_port,
            server: None,
            gateway: None,
            op: Operator::new("http://127.0.0.1:1", ""),
            boards: Vec::new(),
            figures: Default::default(),
        };
        line.start_server()?;
        let token = std::fs::read_to_string(dir.join("server/operator-token"))?;
        line.op = Operator::new(&line.base(), token.trim());
        line.start_gateway()?;
        Ok(line)
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.server_port)
    }

    pub fn start_server(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let child = Command::new(&self.bins.server)
            .args(["serve", "--root"])
            .arg(self.dir.join("root.cbor"))
            .arg("--data")
            .arg(self.dir.join("server"))
            .args(["--listen", &format!("127.0.0.1:{}", self.server_port)])
            .args(["--poll-seconds", "1", "--tick-ms", "200", "--workers", "2"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bins.server.display()))?;
        self.server = Some(Process(child));
        let until = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/healthz", self.base()))
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            if Instant::now() > until {
                bail!("the fleet server did not come up (see server.log)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// An outage: the server process killed.
    pub fn kill_server(&mut self) {
        self.server = None;
    }

    pub fn start_gateway(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gateway.log"))?;
        let mut child = Command::new(&self.bins.gateway)
            .args(["--listen", &format!("127.0.0.1:{}", self.gateway_port)])
            .args(["--server", &self.base()])
            .arg("--data")
            .arg(self.dir.join("gateway"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bins.gateway.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("gateway: listening on") {
                    let _ = tx.send(());
                }
            }
        });
        self.gateway = Some(Process(child));
        rx.recv_timeout(Duration::from_secs(30))
            .context("the gateway did not start listening (see gateway.log)")
    }

    /// The gateway killed (SIGKILL): links drop, the boards' emulators reconnect.
    pub fn kill_gateway(&mut self) {
        self.gateway = None;
    }

    /// The gateway's counters (its stats.json).
    pub fn gateway_stats(&self) -> Value {
        std::fs::read(self.dir.join("gateway/stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Enrols `n` boards (`node-01`...) with `firmware` installed, and powers them on.
    pub fn add_boards(&mut self, n: usize, firmware: &testkit::image::SlotImage) -> Result<()> {
        for i in 1..=n {
            let id = format!("node-{i:02}");
            let credential = self.op.enroll(&id, "mps2-an386", &["line-1"])?;
            let board = Board::new(
                &self.dir.join("boards").join(&id),
                &id,
                &credential,
                firmware,
                &self.bins.bootloader,
            )?;
            self.boards.push(board);
        }
        let port = self.gateway_port;
        for b in &mut self.boards {
            b.power_on(port)?;
        }
        Ok(())
    }

    /// The server's view of a device.
    pub fn device(&self, id: &str) -> Result<Value> {
        self.op.get(&format!("/api/devices/{id}"))
    }

    /// The reports the server stored for a device.
    pub fn reports(&self, id: &str) -> Result<Vec<Value>> {
        let v = self.op.get(&format!("/api/devices/{id}/reports"))?;
        Ok(v.as_array()
            .cloned()
            .or_else(|| v["reports"].as_array().cloned())
            .unwrap_or_default())
    }

    /// Waits until `ok` holds for every board's server view.
    pub fn wait_devices(&self, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            let mut missing = Vec::new();
            for b in &self.boards {
                match self.device(&b.id) {
                    Ok(v) if ok(&v) => {}
                    Ok(v) => missing.push(format!("{}: {v}", b.id)),
                    Err(e) => missing.push(format!("{}: {e}", b.id)),
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("after {timeout:?}: {}", missing.join("; "));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
