//! The agent firmware of QEMU mps2-an386, on the device library: the line's inference loop and
//! the agent in one superloop, talking to the gateway in framed CBOR over UART0. Booted by the
//! bootloader from the active slot; its identity is the record provisioned in its flash.
#![no_std]
#![no_main]

mod board;

use agent::provisioning::MAX_RECORD;
use artifact::Version;
use board::Mps2;
use board_mps2::{LAYOUT, SemihostingFlash, clock, handoff, say, timer, uart};
use core::cell::RefCell;
use core::mem::MaybeUninit;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use device::{BootInfo, Device, Parts, SampleLine};
use embassy_sync::blocking_mutex::Mutex;
use protocol::BootStatus;

/// The trust root, baked in at build time like the bootloader's.
static ROOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/root.cbor"));
/// TIMER0's period while an answer is coming: 100 us of the 25 MHz clock (at most a byte per
/// tick arrives: 10 KB/s).
const FAST_TICKS: u32 = 2_500;
/// Tensor arena for a model (inference and validation each have one).
const ARENA: usize = 64 * 1024;
/// One inference every this many milliseconds of the emulated clock (a line of 40 emulated
/// boards shares two host cores).
const PERIOD_MS: u64 = 500;
/// The model slots, mapped: from slot A's start to slot B's end.
const MAPPED: usize = (LAYOUT.model_b.end() - LAYOUT.model_a.offset) as usize;
const _: () = assert!(LAYOUT.model_a.end() == LAYOUT.model_b.offset);

static mut VIEW: [u8; MAPPED] = [0; MAPPED];
static mut ARENAS: [[u8; ARENA]; 2] = [[0; ARENA]; 2];
static mut IDENTITY: [u8; MAX_RECORD] = [0; MAX_RECORD];
/// The decoder of delta and compressed downloads, lent to the agent. Built at start: as a
/// constant initializer its 7.7 KiB of tables would be copied from flash (.data), not zeroed.
static mut DECODER: MaybeUninit<delta::Decoder> = MaybeUninit::uninit();

#[exception]
fn SysTick() {
    clock::on_systick();
}

/// Every external interrupt lands here (cortex-m-rt's default table); UART0's receiver and
/// TIMER0 are enabled.
#[exception]
unsafe fn DefaultHandler(irq: i16) {
    if irq == uart::RX_IRQ as i16 {
        uart::on_rx_interrupt();
    } else if irq == timer::IRQ as i16 {
        timer::on_interrupt();
    }
}

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        halt("peripherals")
    };
    clock::start(cp.SYST);
    let Some(info) = handoff::read() else {
        halt("no boot information from the bootloader")
    };
    let status = match info.outcome {
        0 => BootStatus::Confirmed,
        1 => BootStatus::Trial,
        _ => BootStatus::Reverted,
    };
    #[cfg(feature = "fault-hang")]
    if status == BootStatus::Trial {
        say(&[b"agent: hanging on trial\n"]);
        loop {
            cortex_m::asm::nop();
        }
    }
    // SAFETY: taken once, here, before anything else refers to them.
    let (view, arenas, identity, decoder) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(VIEW),
            &mut *core::ptr::addr_of_mut!(ARENAS),
            &mut *core::ptr::addr_of_mut!(IDENTITY),
            (*core::ptr::addr_of_mut!(DECODER)).write(delta::Decoder::new()),
        )
    };
    let Ok(flash) = SemihostingFlash::open_mapped(LAYOUT.model_a.offset, view) else {
        halt("no flash file")
    };
    let flash = Mutex::new(RefCell::new(flash));
    let [run_arena, check_arena] = arenas;
    let (a, b, c) = info.version;
    let parts = Parts {
        flash: &flash,
        layout: &LAYOUT,
        trust_root: ROOT,
        boot: BootInfo {
            status,
            version: Version::new(a, b, c),
            boots: info.boots,
        },
        build: BUILD,
        identity,
        decoder: Some(decoder),
        check_arena,
    };
    let mut device = match Device::new(parts, Mps2 { flash: &flash }) {
        Ok(d) => d,
        Err(e) => halt(e.as_str()),
    };
    let mut line = SampleLine::new(PERIOD_MS, run_arena);
    uart::init();
    timer::init();
    let mut fast = false;
    loop {
        let wake = device.poll(&mut line);
        while let Some(bytes) = device.transmit() {
            uart::write_all(bytes);
        }
        // Polled: QEMU 7.2's UART never raises its RX interrupt status (RXFULL it does), so the
        // core sleeps between looks, woken by TIMER0 while an answer is coming. It does not spin
        // for the next byte: a spinning core takes the host time its emulator needs to hand
        // the byte over, and a line of 40 boards got 100 bytes per second each that way.
        uart::drain();
        let mut got = false;
        while let Some(byte) = uart::read_byte() {
            device.receive(&[byte]);
            got = true;
        }
        // While an answer is coming, TIMER0 wakes the core every 100 us to look for bytes.
        if device.expecting() != fast {
            fast = device.expecting();
            if fast {
                timer::start(FAST_TICKS);
            } else {
                timer::stop();
            }
        }
        if !got && !uart::has_data() && clock::now_ms() < wake {
            // Idle until the next tick: SysTick (10 ms), or TIMER0 while an answer is coming.
            cortex_m::asm::wfi();
        }
    }
}

/// The build this firmware says it is at boot (a version bump in the OTA benchmark sets it).
const BUILD: &str = match option_env!("FLEET_FIRMWARE_BUILD") {
    Some(b) => b,
    None => env!("CARGO_PKG_VERSION"),
};

fn halt(why: &str) -> ! {
    #[cfg(not(feature = "bench-change"))]
    say(&[b"agent: halt: ", why.as_bytes(), b"\n"]);
    // The OTA benchmark's one changed function (`firmware-one-function`).
    #[cfg(feature = "bench-change")]
    say(&[b"agent: halted: ", why.as_bytes(), b"\n"]);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt("panic")
}
