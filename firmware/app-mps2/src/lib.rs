//! What the test applications share: reading the boot state and confirming.
#![no_std]

use board_mps2::{LAYOUT, SemihostingFlash};
use core::cell::RefCell;
use cortex_m_semihosting::{debug, hprintln};
use embassy_boot::{BlockingFirmwareState, State};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;

/// Prints what the application sees, and returns the flash for the next steps.
pub fn start(name: &str) -> Mutex<NoopRawMutex, RefCell<SemihostingFlash>> {
    let Ok(flash) = SemihostingFlash::open() else {
        exit_failure("no flash")
    };
    let flash = Mutex::new(RefCell::new(flash));
    let state = with_state(&flash, |s| s.get_state().ok());
    let state = match state {
        Some(State::Boot) => "boot",
        Some(State::Swap) => "swap",
        Some(State::Revert) => "revert",
        Some(State::DfuDetach) => "dfu",
        None => "unreadable",
    };
    hprintln!("app: {} running, state {}", name, state);
    flash
}

fn with_state<T>(
    flash: &Mutex<NoopRawMutex, RefCell<SemihostingFlash>>,
    f: impl FnOnce(
        &mut BlockingFirmwareState<'_, BlockingPartition<'_, NoopRawMutex, SemihostingFlash>>,
    ) -> T,
) -> T {
    let part = BlockingPartition::new(flash, LAYOUT.state.offset, LAYOUT.state.size);
    let mut aligned = [0u8; 4];
    let mut state = BlockingFirmwareState::new(part, &mut aligned);
    f(&mut state)
}

/// Marks the running image booted (the application's checks passed).
pub fn confirm(flash: &Mutex<NoopRawMutex, RefCell<SemihostingFlash>>) {
    if with_state(flash, |s| s.mark_booted()).is_err() {
        exit_failure("mark_booted failed");
    }
    hprintln!("app: confirmed");
}

pub fn exit_success() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

pub fn exit_failure(why: &str) -> ! {
    hprintln!("app: failed: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit_failure("panic")
}
