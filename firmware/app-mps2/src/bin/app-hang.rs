//! Test application: hangs without confirming (the watchdog must reset, the bootloader revert).
#![no_std]
#![no_main]

#[cortex_m_rt::entry]
fn main() -> ! {
    let _flash = app_mps2::start("hang");
    loop {
        core::hint::spin_loop();
    }
}
