//! What the test applications share: reading the boot state and confirming.
#![no_std]

use board_mps2::{LAYOUT, SemihostingFlash};
use bootloader::{BootState, Phase};
use core::cell::RefCell;
use cortex_m_semihosting::{debug, hprintln};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;

/// Prints what the application sees, and returns the flash for the next steps.
pub fn start(name: &str) -> Mutex<NoopRawMutex, RefCell<SemihostingFlash>> {
    let Ok(flash) = SemihostingFlash::open() else {
        exit_failure("no flash")
    };
    let flash = Mutex::new(RefCell::new(flash));
    let state = match with_state(&flash, |s| s.map(|s| s.phase())) {
        Ok(Phase::Confirmed) => "boot",
        Ok(Phase::Requested | Phase::Swapping { .. } | Phase::Swapped { .. }) => "swap",
        Ok(Phase::Reverting { .. } | Phase::Reverted) => "revert",
        Err(_) => "unreadable",
    };
    hprintln!("app: {} running, state {}", name, state);
    flash
}

fn with_state<T>(
    flash: &Mutex<NoopRawMutex, RefCell<SemihostingFlash>>,
    f: impl FnOnce(
        Result<BootState<BlockingPartition<'_, NoopRawMutex, SemihostingFlash>>, bootloader::Error>,
    ) -> T,
) -> T {
    let part = BlockingPartition::new(flash, LAYOUT.state.offset, LAYOUT.state.size);
    f(BootState::new(part))
}

/// Marks the running image booted (the application's checks passed).
pub fn confirm(flash: &Mutex<NoopRawMutex, RefCell<SemihostingFlash>>) {
    if with_state(flash, |s| s.and_then(|mut s| s.mark_booted())).is_err() {
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
