//! The agent firmware of QEMU mps2-an386: runs the line's inference loop while the agent
//! handles updates, talking to the gateway in framed CBOR over UART0. Booted by the bootloader
//! from the active slot; its identity (device id and credential) is provisioned in the host
//! file `identity` beside the flash file.
#![no_std]
#![no_main]

mod line;
mod uplink;

use agent::{Agent, Identity, Next, Session};
use artifact::{Envelope, TrustRoot, Version};
use board_mps2::{LAYOUT, Num, SemihostingFlash, clock, handoff, say, timer, uart, watchdog};
use core::cell::RefCell;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use embassy_sync::blocking_mutex::Mutex;
use line::{Line, SLOT};
use protocol::{BootStatus, Firmware};

/// The trust root, baked in at build time like the bootloader's.
static ROOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/root.cbor"));
/// TIMER0's period while an answer is coming: 100 us of the 25 MHz clock (at most a byte per
/// tick arrives: 10 KB/s).
const FAST_TICKS: u32 = 2_500;
/// Tensor arena for a model (inference and validation each have one).
const ARENA: usize = 64 * 1024;

static mut MODELS: [[u8; SLOT]; 2] = [[0; SLOT]; 2];
static mut ARENAS: [[u8; ARENA]; 2] = [[0; ARENA]; 2];
/// The decoder of delta and compressed downloads (`size_of::<delta::Decoder>()`, beside the
/// agent's own state).
static mut DECODER: delta::Decoder = delta::Decoder::new();

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
    let Some(boot) = handoff::read() else {
        halt("no boot information from the bootloader")
    };
    let status = match boot.outcome {
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
    let Ok(flash) = SemihostingFlash::open() else {
        halt("no flash file")
    };
    let flash = Mutex::new(RefCell::new(flash));
    let mut id = [0u8; 256];
    let Some((device_id, credential)) = identity(&mut id) else {
        halt("no identity file")
    };
    let Some(root) = Envelope::decode(ROOT)
        .ok()
        .and_then(|e| TrustRoot::decode_body(e.body).ok())
    else {
        halt("bad baked-in trust root")
    };
    // SAFETY: taken once, here, before anything else refers to them.
    let (models, arenas) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(MODELS),
            &mut *core::ptr::addr_of_mut!(ARENAS),
        )
    };
    let [run_arena, check_arena] = arenas;
    let identity = Identity {
        device_id,
        board: LAYOUT.board,
        // The ABI of the model runtime this firmware links.
        runtime_abi: model::RUNTIME_ABI,
        arena_capacity: ARENA as u32,
    };
    let Ok(mut agent) = Agent::open(&flash, &LAYOUT, root, identity) else {
        halt("agent records unreadable")
    };
    // SAFETY: taken once, here; only the agent refers to it.
    agent.set_stream_decoder(unsafe { &mut *core::ptr::addr_of_mut!(DECODER) });
    let version = Version::new(boot.version.0, boot.version.1, boot.version.2);
    let first = agent.after_boot(status, version);
    let (v, b) = (boot.version, boot.boots);
    say(&[
        b"agent: up, firmware ",
        Num(v.0).as_bytes(&mut [0; 10]),
        b".",
        Num(v.1).as_bytes(&mut [0; 10]),
        b".",
        Num(v.2).as_bytes(&mut [0; 10]),
        match status {
            BootStatus::Confirmed => b" confirmed",
            BootStatus::Trial => b" trial",
            BootStatus::Reverted => b" reverted",
        },
        b", boot ",
        Num(b).as_bytes(&mut [0; 10]),
        b", build ",
        BUILD.as_bytes(),
        b"\n",
    ]);
    let mut line = Line::default();
    line.load(&agent, &flash, models);
    let mut session = Session::new(
        agent,
        Firmware { version, status },
        boot.boots,
        clock::now_ms(),
    );
    let _ = session.after_action(first);
    uart::init();
    timer::init();
    let mut fast = false;
    let mut link = uplink::Uplink::new(device_id, credential);
    let mut fetching = None;
    loop {
        watchdog::feed();
        // For the test harness: how each update's payloads come.
        let transfer = session.agent().transfer();
        if transfer.map(|t| t.0) != fetching {
            fetching = transfer.map(|t| t.0);
            if let Some((release, how)) = transfer {
                say(&[
                    b"agent: fetching release ",
                    Num(release as u32).as_bytes(&mut [0; 10]),
                    match how {
                        agent::Transfer::Plain => b" in full\n",
                        agent::Transfer::Delta => b" as a delta\n",
                        agent::Transfer::Compressed => b" compressed\n",
                    },
                ]);
            }
        }
        let now = clock::now_ms();
        let before = line.inferences;
        line.tick(now, models, run_arena);
        if line.inferences != before && line.inferences % 10 == 0 {
            // For the test harness: the line's work goes on (every 5 s of emulated time).
            say(&[
                b"agent: inferences ",
                Num(line.inferences as u32).as_bytes(&mut [0; 10]),
                b"
",
            ]);
        }
        session.set_inferences(line.inferences);
        if let Some(action) = session.take_action() {
            act(
                action,
                &mut session,
                &flash,
                &mut line,
                models,
                (&mut *run_arena, &mut *check_arena),
            );
            continue;
        }
        link.poll(&mut session, now);
        let wake = session.next_wake_ms().min(line.next_ms());
        // While an answer is coming, TIMER0 wakes the core every 100 us to look for bytes.
        if link.expecting() != fast {
            fast = link.expecting();
            if fast {
                timer::start(FAST_TICKS);
            } else {
                timer::stop();
            }
        }
        if !uart::has_data() && clock::now_ms() < wake {
            // Idle until the next tick: SysTick (10 ms), or TIMER0 while an answer is coming.
            cortex_m::asm::wfi();
        }
    }
}

/// What only the platform can do: validate a downloaded model, check a firmware on trial,
/// reload a model switched to, reset.
fn act(
    action: Next,
    session: &mut Session<'_, SemihostingFlash>,
    flash: &line::Flash,
    line: &mut Line,
    models: &mut [[u8; SLOT]; 2],
    arenas: (&mut [u8; ARENA], &mut [u8; ARENA]),
) {
    let (run_arena, check_arena) = arenas;
    match action {
        Next::Validate => {
            let agent = session.agent();
            let slot = agent.inactive_slot();
            let (m, s) = agent.pending_sizes().unwrap_or((0, 0));
            let index = line::index(slot);
            if line.slot() == Some(slot)
                || !line::copy_slot(agent, flash, slot, m + s, &mut models[index])
            {
                halt("cannot stage the new model in RAM");
            }
            count("agent: validating, inferences ", line.inferences);
            let result = {
                let models: &[[u8; SLOT]; 2] = models;
                let clock = validation_clock(line, models, run_arena);
                session
                    .agent()
                    .validate(&models[index][..], check_arena, clock)
            };
            let switched = matches!(result, Ok(Next::Switched(_)));
            let _ = session.after_action(result);
            if switched {
                count("agent: switched model, inferences ", line.inferences);
                line.load(session.agent(), flash, models);
            } else {
                count("agent: kept model, inferences ", line.inferences);
            }
        }
        Next::CheckFirmware => {
            let slot = line.slot().map_or(0, line::index);
            say(&[b"agent: checking firmware on trial\n"]);
            let result = {
                let models: &[[u8; SLOT]; 2] = models;
                let clock = validation_clock(line, models, run_arena);
                session
                    .agent()
                    .confirm_firmware(&models[slot][..], check_arena, clock)
            };
            if matches!(result, Ok(Next::Idle)) {
                say(&[b"agent: firmware confirmed\n"]);
                if let Some(info) = handoff::read() {
                    let (a, b, c) = info.version;
                    session.set_firmware(Firmware {
                        version: Version::new(a, b, c),
                        status: BootStatus::Confirmed,
                    });
                }
            }
            let _ = session.after_action(result);
        }
        Next::Switched(_) => {
            say(&[b"agent: switched model\n"]);
            line.load(session.agent(), flash, models);
        }
        Next::Reboot => {
            say(&[b"agent: resetting\n"]);
            board_mps2::reset();
        }
        Next::Idle | Next::Fetch(_) => {}
    }
}

/// The build this firmware says it is at boot (a version bump in the OTA benchmark sets it).
const BUILD: &str = match option_env!("FLEET_FIRMWARE_BUILD") {
    Some(b) => b,
    None => env!("CARGO_PKG_VERSION"),
};

fn count(what: &str, n: u64) {
    #[cfg(not(feature = "bench-change"))]
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    // The benchmark's one changed function: the count modulo 2^32 instead of saturated.
    #[cfg(feature = "bench-change")]
    let n = n as u32;
    say(&[what.as_bytes(), Num(n).as_bytes(&mut [0; 10]), b"\n"]);
}

/// The clock a validation run measures with. `model::validation::run` reads it at the start
/// and at the end of each sample; before each start the line's own inference runs when it is
/// due, so the line's work goes on through a validation and is never inside a measured sample.
/// It also feeds the watchdog (a trial's validation may outlast its timeout); the `fault-slow`
/// firmware adds 10 ms to every measured sample.
fn validation_clock<'a>(
    line: &'a mut Line,
    models: &'a [[u8; SLOT]; 2],
    arena: &'a mut [u8; ARENA],
) -> impl FnMut() -> u64 + 'a {
    let mut calls = 0u32;
    move || {
        watchdog::feed();
        if calls % 2 == 0 {
            line.tick(clock::now_ms(), models, arena);
        }
        calls = calls.wrapping_add(1);
        #[cfg(feature = "fault-slow")]
        {
            let end = clock::ticks() + 10 * clock::TICKS_PER_MS;
            while clock::ticks() < end {}
        }
        clock::now_ns()
    }
}

/// `identity`: the device id and its credential, separated by white space.
fn identity(buf: &mut [u8; 256]) -> Option<(&'static str, &'static str)> {
    let n = board_mps2::read_host_file(b"identity\0", buf)?;
    // The identity lives as long as the firmware runs: keep it in a static copy.
    static mut COPY: [u8; 256] = [0; 256];
    // SAFETY: written once, before any reference to it exists.
    let copy = unsafe { &mut *core::ptr::addr_of_mut!(COPY) };
    copy[..n].copy_from_slice(&buf[..n]);
    let text = core::str::from_utf8(&copy[..n]).ok()?;
    let mut words = text.split_ascii_whitespace();
    Some((words.next()?, words.next()?))
}

fn halt(why: &str) -> ! {
    say(&[b"agent: halt: ", why.as_bytes(), b"\n"]);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt("panic")
}
