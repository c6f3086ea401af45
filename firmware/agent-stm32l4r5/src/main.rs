//! The agent firmware of the NUCLEO-L4R5ZI on the device library: the sample line and the agent
//! in one embassy task, framed CBOR over LPUART1 (the ST-LINK's virtual COM port). Booted in
//! place by boot-stm32l4r5 from the active slot; its identity is the record provisioned in flash.
#![no_std]
#![no_main]

mod board;

use agent::provisioning::MAX_RECORD;
use board_stm32l4r5::EccFlash;
use core::cell::RefCell;
use core::mem::MaybeUninit;
use cortex_m_rt::exception;
use device::{Device, Parts, SampleLine};
use embassy_executor::Spawner;
use embassy_stm32::rcc::{Pll, PllMul, PllPreDiv, PllRDiv, PllSource, Sysclk};
use embassy_stm32::{bind_interrupts, flash::Flash, peripherals, usart, usart::BufferedUart};
use embassy_sync::blocking_mutex::Mutex;
use layout::STM32L4R5 as LAYOUT;

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
    LPUART1 => usart::BufferedInterruptHandler<peripherals::LPUART1>;
});

// SAFETY (of the handler): it touches only FLASH_ECCR and an atomic, so it may preempt anything.
#[exception]
unsafe fn NonMaskableInt() {
    board_stm32l4r5::on_nmi();
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    // 80 MHz from HSI16 through the PLL (range 1; embassy sets the flash wait states). The
    // default config also powers VDDIO2 (PWR_CR2.IOSV), which port G, the UART's, needs.
    let mut config = embassy_stm32::Config::default();
    config.rcc.hsi = true;
    config.rcc.pll = Some(Pll {
        source: PllSource::HSI,
        prediv: PllPreDiv::DIV1,
        mul: PllMul::MUL10,
        divp: None,
        divq: None,
        divr: Some(PllRDiv::DIV2),
    });
    config.rcc.sys = Sysclk::PLL1_R;
    let p = embassy_stm32::init(config);
    let flash = Mutex::new(RefCell::new(EccFlash(Flash::new_blocking(p.FLASH))));
    // SAFETY: each taken once, here, before anything else refers to it.
    let [run_arena, check_arena] = unsafe { &mut *&raw mut ARENAS };
    let [rx, tx] = unsafe { &mut *&raw mut UART };
    let mut line = SampleLine::new(PERIOD_MS, run_arena);
    // The ST-LINK's virtual COM port: PG8 RX, PG7 TX, 115 200 baud (the default config).
    let config = usart::Config::default();
    let Ok(mut uart) = BufferedUart::new(p.LPUART1, p.PG8, p.PG7, tx, rx, Irqs, config) else {
        halt()
    };
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
    let Ok(mut device) = parts.and_then(|parts| Device::new(parts, board::Stm32)) else {
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
