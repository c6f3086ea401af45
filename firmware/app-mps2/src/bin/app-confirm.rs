//! Test application: confirms the image it runs, then stops the emulator.
#![no_std]
#![no_main]

#[cortex_m_rt::entry]
fn main() -> ! {
    let flash = app_mps2::start("confirm");
    app_mps2::confirm(&flash);
    app_mps2::exit_success()
}
