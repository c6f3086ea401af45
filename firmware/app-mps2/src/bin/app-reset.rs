//! Test application: fails its own checks and resets without confirming (the bootloader must
//! revert it).
#![no_std]
#![no_main]

#[cortex_m_rt::entry]
fn main() -> ! {
    let _flash = app_mps2::start("reset");
    cortex_m_semihosting::hprintln!("app: self-check failed, resetting");
    board_mps2::reset()
}
