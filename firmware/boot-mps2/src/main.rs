//! The bootloader of QEMU mps2-an386: runs the bootloader core (swap or revert, verify,
//! downgrade check), copies the chosen image to RAM, checks it again there, arms the watchdog
//! for a trial boot, and jumps.
#![no_std]
#![no_main]

use board_mps2::{LAYOUT, Num, SemihostingFlash, handoff, say, watchdog};
use bootloader::{Outcome, verify_loaded};
use core::cell::RefCell;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use embassy_sync::blocking_mutex::Mutex;
use embedded_storage::nor_flash::ReadNorFlash;

/// The trust root baked in at build time, verified by the build script (bootloader-build.rs).
mod baked {
    include!(concat!(env!("OUT_DIR"), "/root.rs"));
}
/// Time a trial image has to confirm before the watchdog resets the board (twice this).
const TRIAL_WATCHDOG_MS: u32 = 2_000;

#[entry]
fn main() -> ! {
    let Ok(flash) = SemihostingFlash::open() else {
        halt("no flash file")
    };
    let flash = Mutex::new(RefCell::new(flash));
    let Some(root) = baked::trust_root() else {
        halt("bad baked-in trust root")
    };
    let mut page = [0u8; 4096];
    let decision = match bootloader::boot(&flash, &LAYOUT, &root, &mut page) {
        Ok(d) => d,
        Err(_) => halt("no bootable image"),
    };
    let outcome = match decision.outcome {
        Outcome::Confirmed => "confirmed",
        Outcome::Trial => "trial",
        Outcome::Reverted => "reverted",
        Outcome::Fallback => "fallback",
    };
    let v = decision.image.version;
    say(&[
        b"boot: ",
        outcome.as_bytes(),
        b" ",
        Num(v.major).as_bytes(&mut [0; 10]),
        b".",
        Num(v.minor).as_bytes(&mut [0; 10]),
        b".",
        Num(v.patch).as_bytes(&mut [0; 10]),
        b" counter ",
        Num(u32::try_from(decision.image.security_counter).unwrap_or(u32::MAX))
            .as_bytes(&mut [0; 10]),
        b" size ",
        Num(decision.image.size).as_bytes(&mut [0; 10]),
        b"\n",
    ]);
    let Some(load) = LAYOUT.load_address else {
        halt("board is not RAM-load")
    };
    // SAFETY: 0x0010_0000.. is code RAM reserved for the application (memory.x keeps the
    // bootloader below it) and the image size was checked against the slot.
    let dst =
        unsafe { core::slice::from_raw_parts_mut(load as *mut u8, decision.image.size as usize) };
    let read = flash.lock(|f| {
        f.borrow_mut()
            .read(decision.region.offset + LAYOUT.image_header_size, dst)
    });
    // RAM is not cleared by a reset: always load, then hash what will run.
    if read.is_err() || verify_loaded(&decision.image, dst).is_err() {
        halt("image changed while loading");
    }
    // The application reports what happened at this boot (a revert among it).
    handoff::write(
        match decision.outcome {
            Outcome::Confirmed => 0,
            Outcome::Trial => 1,
            Outcome::Reverted => 2,
            Outcome::Fallback => 3,
        },
        (v.major, v.minor, v.patch),
        u32::try_from(decision.image.security_counter).unwrap_or(u32::MAX),
    );
    if decision.outcome == Outcome::Trial {
        watchdog::arm(TRIAL_WATCHDOG_MS);
    }
    // SAFETY: the image is a verified Cortex-M vector table plus code at `load`.
    unsafe {
        cortex_m::Peripherals::steal().SCB.vtor.write(load);
        cortex_m::asm::bootload(load as *const u32)
    }
}

/// The 32 external interrupts of mps2-an386, all unused by the bootloader (cortex-m-rt's
/// default table would reserve 240).
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); 32] = [default_irq; 32];

unsafe extern "C" fn default_irq() {
    halt("unexpected interrupt")
}

fn halt(why: &str) -> ! {
    say(&[b"boot: halt: ", why.as_bytes(), b"\n"]);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt("panic")
}
