//! Links the agent core as the agent firmware will (mps2-an386, semihosting flash) so that
//! `cargo xtask firmware` can measure its code size and RAM; when run, it opens the agent,
//! handles a check-in's command and prints the size of its state.
#![no_std]
#![no_main]

use agent::{Agent, Identity};
use artifact::{Envelope, TrustRoot};
use board_mps2::{LAYOUT, Num, SemihostingFlash, say};
use core::cell::RefCell;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use embassy_sync::blocking_mutex::Mutex;
use protocol::Command;

/// Any signed root will do for a size measurement; the test root is baked in like the
/// bootloader's.
static ROOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/root.cbor"));

#[entry]
fn main() -> ! {
    let Ok(flash) = SemihostingFlash::open() else {
        exit(false)
    };
    let flash = Mutex::new(RefCell::new(flash));
    let Some(root) = Envelope::decode(ROOT)
        .ok()
        .and_then(|e| TrustRoot::decode_body(e.body).ok())
    else {
        exit(false)
    };
    let identity = Identity {
        device_id: "size",
        board: LAYOUT.board,
        runtime_abi: 1,
        arena_capacity: 64 * 1024,
    };
    let Ok(mut agent) = Agent::open(&flash, &LAYOUT, root, identity) else {
        exit(false)
    };
    // Opaque, so that every command's path stays linked (a constant `Idle` let the optimizer
    // drop the whole update path), as the real firmware's loop calls them.
    let _ = agent.on_command(&core::hint::black_box(Command::Idle { poll_after_s: 60 }));
    let _ = agent.on_chunk(1, 0, &[0; 4]);
    #[cfg(feature = "validate")]
    {
        // Opaque inputs, so the optimizer keeps the whole runtime as a real call would.
        let mut arena = [0u8; 64];
        let slot = [0u8; 64];
        let _ = agent.validate(
            core::hint::black_box(&slot[..]),
            core::hint::black_box(&mut arena[..]),
            || 0,
        );
    }
    let size = core::mem::size_of::<Agent<'static, SemihostingFlash>>() as u32;
    say(&[
        b"agent state: ",
        Num(size).as_bytes(&mut [0; 10]),
        b" bytes\n",
    ]);
    exit(true)
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(false)
}
