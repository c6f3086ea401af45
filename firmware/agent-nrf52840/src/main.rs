//! The agent firmware of the nRF52840-DK on the device library: the sample line and the agent
//! in one embassy task, framed CBOR over UARTE0 (the DK's virtual COM port). Booted in place by
//! boot-nrf52840 from the active slot; its identity is the record provisioned in its flash.
#![no_std]
#![no_main]

mod board;

use agent::provisioning::MAX_RECORD;
use core::cell::RefCell;
use core::mem::MaybeUninit;
use device::{Device, Parts, SampleLine};
use embassy_executor::Spawner;
use embassy_nrf::buffered_uarte::{self, BufferedUarte};
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::{bind_interrupts, config::HfclkSource, peripherals, uarte};
use embassy_sync::blocking_mutex::Mutex;
use layout::NRF52840 as LAYOUT;

/// The trust root, baked in at build time like the bootloader's.
static ROOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/root.cbor"));
/// Tensor arena for a model (inference and validation each have one).
const ARENA: usize = 64 * 1024;
/// One inference of the sample line every this many milliseconds.
const PERIOD_MS: u64 = 100;

static mut ARENAS: [[u8; ARENA]; 2] = [[0; ARENA]; 2];
static mut IDENTITY: [u8; MAX_RECORD] = [0; MAX_RECORD];
/// The decoder of delta and compressed downloads, lent to the agent; built at start, so its
/// tables are zeroed RAM, not an initializer copied from flash.
static mut DECODER: MaybeUninit<delta::Decoder> = MaybeUninit::uninit();
/// The UART's receive and transmit buffers: a frame's worth between two polls.
static mut UART: [[u8; 256]; 2] = [[0; 256]; 2];

bind_interrupts!(struct Irqs {
    UARTE0 => buffered_uarte::InterruptHandler<peripherals::UARTE0>;
});

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let mut config = embassy_nrf::config::Config::default();
    config.hfclk_source = HfclkSource::ExternalXtal; // the DK's crystal: the UART's baud rate
    let p = embassy_nrf::init(config);
    let flash = Mutex::new(RefCell::new(Nvmc::new(p.NVMC)));
    // SAFETY: each taken once, here, before anything else refers to it.
    let [run_arena, check_arena] = unsafe { &mut *&raw mut ARENAS };
    let [rx, tx] = unsafe { &mut *&raw mut UART };
    let mut line = SampleLine::new(PERIOD_MS, run_arena);
    // The DK's virtual COM port: P0.08 RX, P0.06 TX, 115 200 baud (the default config).
    let mut uart = BufferedUarte::new(
        p.UARTE0,
        p.TIMER1,
        p.PPI_CH0,
        p.PPI_CH1,
        p.PPI_GROUP0,
        p.P0_08,
        p.P0_06,
        Irqs,
        uarte::Config::default(),
        rx,
        tx,
    );
    // SAFETY: taken once, here, before anything else refers to them.
    let (identity, decoder) = unsafe {
        (
            &mut *&raw mut IDENTITY,
            (*&raw mut DECODER).write(delta::Decoder::new()),
        )
    };
    let build = env!("CARGO_PKG_VERSION");
    let parts = Parts::from_flash(
        &flash,
        &LAYOUT,
        ROOT,
        build,
        identity,
        Some(decoder),
        check_arena,
    );
    // Nothing to say it on: the board's one channel carries framed messages only.
    let Ok(mut device) = parts.and_then(|parts| Device::new(parts, board::Nrf)) else {
        halt()
    };
    device::run(&mut device, &mut line, &mut uart).await
}

/// Nothing runs: on a trial boot the watchdog gives the bootloader its revert.
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt()
}
