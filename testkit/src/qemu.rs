//! The QEMU command line of the emulated board: `mps2-an386` (Cortex-M4F), `-icount shift=4`
//! (16 ns per instruction: deterministic virtual time), ARM semihosting on the host's files
//! and console, no display.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Where the board's UART0 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uart {
    /// QEMU's default under `-nographic`: stdio, shared with the monitor.
    #[default]
    Stdio,
    /// Nowhere, and no monitor: stdout carries the semihosting console alone.
    Off,
    /// A TCP client of `127.0.0.1:PORT` that reconnects every second (no monitor).
    Tcp(u16),
}

/// What a caller changes on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Killed after this long (whole seconds, through `timeout(1)`).
    pub timeout: Option<Duration>,
    /// A reset exits the emulator instead of rebooting the board (`-no-reboot`).
    pub no_reboot: bool,
    pub uart: Uart,
}

/// `qemu-system-arm` running `kernel` (an ELF) on the board. The caller sets the working
/// directory (semihosting opens the board's files there) and the standard streams.
pub fn mps2_an386(kernel: &Path, options: Options) -> Command {
    let mut c = match options.timeout {
        Some(limit) => {
            let mut c = Command::new("timeout");
            c.arg(limit.as_secs().to_string()).arg("qemu-system-arm");
            c
        }
        None => Command::new("qemu-system-arm"),
    };
    c.args(["-M", "mps2-an386", "-nographic", "-icount", "shift=4"]);
    if options.no_reboot {
        c.arg("-no-reboot");
    }
    c.args(["-semihosting-config", "enable=on,target=native"]);
    match options.uart {
        Uart::Stdio => {}
        Uart::Off => {
            c.args(["-monitor", "none", "-serial", "none"]);
        }
        Uart::Tcp(port) => {
            c.args(["-monitor", "none", "-serial"])
                .arg(format!("tcp:127.0.0.1:{port},reconnect=1"));
        }
    }
    c.arg("-kernel").arg(kernel);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(options: Options) -> Vec<String> {
        let c = mps2_an386(Path::new("boot.elf"), options);
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_lines_of_the_callers() {
        let base = "-M mps2-an386 -nographic -icount shift=4";
        let semihosting = "-semihosting-config enable=on,target=native";
        let bench = Options {
            timeout: Some(Duration::from_secs(300)),
            ..Options::default()
        };
        assert_eq!(
            line(bench).join(" "),
            format!("timeout 300 qemu-system-arm {base} {semihosting} -kernel boot.elf")
        );
        let e2e = Options {
            no_reboot: true,
            uart: Uart::Off,
            ..Options::default()
        };
        assert_eq!(
            line(e2e).join(" "),
            format!(
                "qemu-system-arm {base} -no-reboot {semihosting} -monitor none -serial none -kernel boot.elf"
            )
        );
        let hil = Options {
            uart: Uart::Tcp(4000),
            ..Options::default()
        };
        assert_eq!(
            line(hil).join(" "),
            format!(
                "qemu-system-arm {base} {semihosting} -monitor none -serial tcp:127.0.0.1:4000,reconnect=1 -kernel boot.elf"
            )
        );
    }
}
