//! One emulated board of the line: a working directory with its flash file (its identity
//! provisioned in it), a QEMU `mps2-an386` process running the real bootloader (which boots
//! the agent firmware from the flash file), UART0 bridged to the gateway's TCP port, and its
//! console read back in whole, stamped lines (`console.rs`).
//! Killing the process is a power cut: every semihosting flash write has already reached the file.

use crate::console::{self, Console, Stamped, Tail};
use agent::provisioning;
use anyhow::{Context, Result, bail, ensure};
use artifact::Version;
use layout::MPS2_AN386 as LAYOUT;
use powerloss::device::Device;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::image::SlotImage;
use testkit::qemu::{self, Options, Uart};

/// What the board's flash says, read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashState {
    /// The active slot's firmware, if its signature and digest verify.
    pub firmware: Option<Version>,
    /// The boot state: "boot" (confirmed), "swap" (an update waits, swaps or runs on trial),
    /// "revert" (reverting, or reverted and not confirmed again), "unreadable".
    pub boot_state: String,
    /// The active model and whether its slot still holds exactly what its record names.
    pub model: Option<Version>,
    pub model_intact: bool,
    /// An update is in progress (downloaded in part, or waiting for validation or a reboot).
    pub pending: bool,
    /// Reports kept in flash, not yet acknowledged.
    pub unsent_reports: usize,
}

/// A board and, while it is powered, its emulator process.
#[derive(Debug)]
pub struct Board {
    pub id: String,
    dir: PathBuf,
    bootloader: PathBuf,
    child: Option<Child>,
    pub power_cuts: u32,
    /// The console's lines so far, across power cycles, and its reader while powered.
    console: Arc<Mutex<Console>>,
    tail: Option<Tail>,
}

fn version_string(v: Version) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

impl Board {
    /// A board whose active slot holds `firmware`, with its identity provisioned.
    pub fn new(
        dir: &Path,
        id: &str,
        credential: &str,
        firmware: &SlotImage,
        bootloader: &Path,
    ) -> Result<Board> {
        std::fs::create_dir_all(dir)?;
        let device = Device::<4, 4096>::new(LAYOUT, firmware, false);
        let mut flash = device.with_flash(|f| f.bytes().to_vec());
        // Provisioned as a factory would: the identity record at the layout's identity region.
        let mut record = [0xFF; provisioning::MAX_RECORD];
        let identity = provisioning::Provisioned {
            device_id: id,
            credential,
        };
        let n = provisioning::encode(identity, &mut record)
            .map_err(|e| anyhow::anyhow!("identity of {id}: {}", e.as_str()))?;
        let at = LAYOUT.identity.offset as usize;
        flash[at..at + n].copy_from_slice(&record[..n]);
        std::fs::write(dir.join("flash.bin"), flash)?;
        Ok(Board {
            id: id.to_owned(),
            dir: dir.to_owned(),
            bootloader: bootloader.to_owned(),
            child: None,
            power_cuts: 0,
            console: Arc::new(Mutex::new(Console::new(&dir.join("console.log")))),
            tail: None,
        })
    }

    pub fn flash_path(&self) -> PathBuf {
        self.dir.join("flash.bin")
    }

    /// Replaces the image in the active slot (the board powered off): the rest of the flash,
    /// its boot state, counter and agent records, stays.
    pub fn reflash_active(&self, firmware: &SlotImage) -> Result<()> {
        ensure!(self.child.is_none(), "{}: powered on", self.id);
        let mut flash = std::fs::read(self.flash_path())?;
        let slot = flash
            .get_mut(LAYOUT.active.offset as usize..LAYOUT.active.end() as usize)
            .context("active slot")?;
        ensure!(
            firmware.bytes.len() <= slot.len(),
            "image larger than the slot"
        );
        slot.fill(0xFF);
        slot[..firmware.bytes.len()].copy_from_slice(&firmware.bytes);
        std::fs::write(self.flash_path(), flash)?;
        Ok(())
    }

    /// How many of `payload`'s whole sectors the DFU slot holds, where an update writes them
    /// (after the image header), out of how many.
    pub fn dfu_sectors_of(&self, payload: &[u8]) -> Result<(usize, usize)> {
        let flash = std::fs::read(self.flash_path())?;
        let sector = LAYOUT.erase_size as usize;
        let header = LAYOUT.image_header_size as usize;
        let dfu = flash
            .get(LAYOUT.dfu.offset as usize..LAYOUT.dfu.end() as usize)
            .context("DFU slot")?;
        // Sector j of the slot holds payload bytes j*sector - header .. (j+1)*sector - header.
        let whole = (header + payload.len()) / sector;
        let written = (1..whole)
            .filter(|&j| {
                let at = j * sector - header;
                dfu.get(j * sector..(j + 1) * sector) == payload.get(at..at + sector)
            })
            .count();
        Ok((written, whole.saturating_sub(1)))
    }

    /// Powers the board on, its UART0 connected to `link_port` on this host (QEMU reconnects
    /// every second when the other end goes away, as a gateway restart does).
    pub fn power_on(&mut self, link_port: u16) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        // QEMU's semihosting console reaches a file as it is printed (a pipe would buffer it).
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_path())?;
        let options = Options {
            uart: Uart::Tcp(link_port),
            ..Options::default()
        };
        let child = qemu::mps2_an386(&self.bootloader, options)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("qemu.log"))?,
            )
            .spawn()
            .context("start qemu-system-arm")?;
        self.child = Some(child);
        self.tail = Some(Tail::start(self.console.clone()));
        Ok(())
    }

    /// Cuts the power (SIGKILL to the emulator).
    pub fn power_off(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The emulator is gone: its last bytes are in the file, and a line it had begun will
        // never end.
        self.tail = None;
        console::lock(&self.console).power_cut();
    }

    /// A power cut while running: off, then counted.
    pub fn cut_power(&mut self) {
        if self.child.is_some() {
            self.power_off();
            self.power_cuts += 1;
        }
    }

    fn console_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Console lines printed so far (bootloader and agent), across power cycles: whole lines
    /// only (one still being printed waits for its end).
    pub fn console(&self) -> Vec<String> {
        self.stamped_since(0).into_iter().map(|l| l.text).collect()
    }

    pub fn console_len(&self) -> usize {
        let mut c = console::lock(&self.console);
        c.refresh();
        c.lines().len()
    }

    /// Lines printed from index `from` on.
    pub fn console_since(&self, from: usize) -> Vec<String> {
        self.stamped_since(from)
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    /// Lines from index `from` on with when the harness first read each.
    pub fn stamped_since(&self, from: usize) -> Vec<Stamped> {
        let mut c = console::lock(&self.console);
        c.refresh();
        c.lines().get(from..).unwrap_or_default().to_vec()
    }

    /// Lines that a power cut ended before their end.
    pub fn cut_lines(&self) -> Vec<String> {
        console::lock(&self.console).cut_lines.clone()
    }

    /// Waits until a line from `from` on satisfies `want`.
    pub fn wait_console(
        &self,
        from: usize,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.console_since(from).iter().any(|l| want(l)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Reads the flash file as the board's bootloader and agent would.
    pub fn flash_state(&self) -> Result<FlashState> {
        let bytes = std::fs::read(self.flash_path())?;
        if bytes.len() != LAYOUT.flash_size as usize {
            bail!("{}: flash file of {} bytes", self.id, bytes.len());
        }
        read_state(&bytes)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.power_off();
    }
}

/// The state a flash image holds: the firmware as the bootloader verifies it, the model as the
/// agent loads it.
pub fn read_state(bytes: &[u8]) -> Result<FlashState> {
    let device = Device::<4, 4096>::from_bytes(LAYOUT, bytes);
    let root = testkit::keys::trust_root();
    let mut page = vec![0u8; 4096];
    let firmware = {
        let mut part = embassy_embedded_hal::flash::partition::BlockingPartition::new(
            &device.flash,
            LAYOUT.active.offset,
            LAYOUT.active.size,
        );
        bootloader::verify_slot(&mut part, &LAYOUT, &root, &mut page)
            .ok()
            .map(|i| i.version)
    };
    let boot_state = {
        let part = embassy_embedded_hal::flash::partition::BlockingPartition::new(
            &device.flash,
            LAYOUT.state.offset,
            LAYOUT.state.size,
        );
        boot_state_name(bootloader::BootState::new(part).map(|s| s.phase()))
    };
    let agent = agent::Agent::open(&device.flash, &LAYOUT, root, testkit::device::identity())
        .map_err(|e| anyhow::anyhow!("agent records: {e:?}"))?;
    let model = agent
        .active()
        .map(|a| Version::new(a.version.0, a.version.1, a.version.2));
    let model_intact = powerloss::model_update::active_is_intact(&agent, &device.flash);
    let mut unsent = 0;
    let mut probe = agent;
    while let Some(r) = probe.report() {
        unsent += 1;
        if probe.delivered(r.seq).is_err() || unsent > 64 {
            break;
        }
    }
    Ok(FlashState {
        firmware,
        boot_state,
        model,
        model_intact,
        pending: probe.progress().is_some() || probe.needs_validation(),
        unsent_reports: unsent,
    })
}

/// The boot state's phase by the names the scenarios check.
fn boot_state_name(phase: Result<bootloader::Phase, bootloader::Error>) -> String {
    use bootloader::Phase;
    match phase {
        Ok(Phase::Confirmed) => "boot",
        Ok(Phase::Requested | Phase::Swapping { .. } | Phase::Swapped { .. }) => "swap",
        Ok(Phase::Reverting { .. } | Phase::Reverted) => "revert",
        Err(_) => "unreadable",
    }
    .to_owned()
}

/// `1.2.3` of a version.
pub fn show(v: Option<Version>) -> String {
    v.map_or_else(|| "none".to_owned(), version_string)
}
