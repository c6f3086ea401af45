//! Harness for end-to-end tests on QEMU `mps2-an386` boards: flash files built with the same
//! layout and update code as the devices, and emulator runs whose output is read back.
//!
//! The tests need firmware built by `cargo xtask firmware` and run only when
//! `FLEET_QEMU_TESTS=1` (which `cargo xtask ci` sets after building it).

use artifact::Version;
use layout::MPS2_AN386;
use powerloss::device::Device;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::image::{SlotImage, signed_payload};
use testkit::qemu::{self, Options, Uart};

/// Whether the emulator tests are enabled.
pub fn enabled() -> bool {
    std::env::var("FLEET_QEMU_TESTS").is_ok_and(|v| v == "1")
}

fn firmware(profile: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/target/thumbv7em-none-eabihf")
        .join(profile)
        .join(name)
}

/// The bootloader ELF QEMU loads.
pub fn bootloader() -> PathBuf {
    firmware("boot", "boot-mps2")
}

/// A test application's raw binary, signed as `version` with `counter`.
pub fn app(name: &str, version: Version, counter: u64) -> SlotImage {
    let path = firmware("release", &format!("{name}.bin"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask firmware)", path.display()));
    signed_payload(&MPS2_AN386, version, counter, &bytes)
}

/// `app`, padded with zeros to `size` bytes (a swap moves only the pages an image occupies: a
/// large image makes a swap long enough to cut in the middle).
pub fn app_padded(name: &str, version: Version, counter: u64, size: usize) -> SlotImage {
    let path = firmware("release", &format!("{name}.bin"));
    let mut bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask firmware)", path.display()));
    bytes.resize(size.max(bytes.len()), 0);
    signed_payload(&MPS2_AN386, version, counter, &bytes)
}

/// A board: a working directory holding its flash file.
#[derive(Debug)]
pub struct Board {
    dir: tempfile::TempDir,
}

impl Board {
    /// A board whose active slot holds `installed`, with `staged` written to the DFU slot and
    /// marked for swap (as the agent does) when given.
    pub fn new(installed: &SlotImage, staged: Option<&SlotImage>) -> Board {
        let device = Device::<4, 4096>::new(MPS2_AN386, installed, false);
        if let Some(update) = staged {
            device.stage(update).expect("stage update");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("flash.bin"),
            device.with_flash(|f| f.bytes().to_vec()),
        )
        .expect("flash file");
        Board { dir }
    }

    fn flash_path(&self) -> PathBuf {
        self.dir.path().join("flash.bin")
    }

    /// The flash file's bytes.
    pub fn flash(&self) -> Vec<u8> {
        std::fs::read(self.flash_path()).expect("flash file")
    }

    /// Writes an update to the DFU slot and marks it for swap, as the agent does.
    pub fn stage(&self, update: &SlotImage) {
        let device = Device::<4, 4096>::from_bytes(MPS2_AN386, &self.flash());
        device.stage(update).expect("stage update");
        std::fs::write(self.flash_path(), device.with_flash(|f| f.bytes().to_vec()))
            .expect("flash file");
    }

    fn command(&self) -> Command {
        let options = Options {
            no_reboot: true,
            uart: Uart::Off,
            ..Options::default()
        };
        let mut c = qemu::mps2_an386(&bootloader(), options);
        c.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Powers the board on and runs until the emulator exits (semihosting exit, or a reset,
    /// which `-no-reboot` turns into an exit). Returns what the firmware printed.
    pub fn run(&self) -> Run {
        let child = self.command().spawn().expect("start qemu-system-arm");
        wait(child, Duration::from_secs(60))
    }

    /// Powers the board on and cuts the power after `after` of real time.
    pub fn run_and_cut(&self, after: Duration) -> Run {
        let mut child = self.command().spawn().expect("start qemu-system-arm");
        std::thread::sleep(after);
        let _ = child.kill(); // SIGKILL: every semihosting write already reached the file
        wait(child, Duration::from_secs(10))
    }
}

/// What one power-on printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub lines: Vec<String>,
    pub elapsed: Duration,
}

impl Run {
    /// The bootloader's decision line, without its prefix (`confirmed 1.0.0 counter 1 ...`).
    pub fn boot(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix("boot: "))
    }

    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

fn wait(mut child: Child, limit: Duration) -> Run {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    Run {
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        elapsed: started.elapsed(),
    }
}
