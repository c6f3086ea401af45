//! Model benchmark firmware (QEMU mps2-an386): each fixture on its own validation set, timed by
//! SysTick, with accuracy, latency percentiles, the policy verdict and per-operator cost.
//!
//! Under `-icount shift=4` every instruction takes 16 ns of virtual time (62.5 MIPS) and
//! SysTick counts the 25 MHz system clock, so the figures are deterministic.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use model::{Interpreter, Model, ValidationSet, judge, validation};

const RELOAD: u32 = 0x00FF_FFFF;
/// SysTick runs at the 25 MHz system clock.
const NS_PER_TICK: u64 = 40;
/// Samples used for the per-operator profile.
const PROFILE_SAMPLES: usize = 20;

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::SeqCst);
}

/// A 64-bit tick count: SysTick's 24 bits extended by the wrap interrupt.
fn ticks() -> u64 {
    loop {
        let before = WRAPS.load(Ordering::SeqCst);
        let value = SYST::get_current();
        if WRAPS.load(Ordering::SeqCst) == before {
            return (u64::from(before) << 24) | u64::from(RELOAD - value);
        }
    }
}

struct Fixture {
    name: &'static str,
    model: &'static [u8],
    set: &'static [u8],
}

const FIXTURES: [Fixture; 3] = [
    Fixture {
        name: "good",
        model: include_bytes!("../../../model/fixtures/good.tflite"),
        set: include_bytes!("../../../model/fixtures/good.vset"),
    },
    Fixture {
        name: "regressed",
        model: include_bytes!("../../../model/fixtures/regressed.tflite"),
        set: include_bytes!("../../../model/fixtures/regressed.vset"),
    },
    Fixture {
        name: "slow",
        model: include_bytes!("../../../model/fixtures/slow.tflite"),
        set: include_bytes!("../../../model/fixtures/slow.vset"),
    },
];

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    // The policy every model artifact carries by default: 90 % accuracy, p99 at most 10 ms.
    let policy = artifact::Policy {
        min_accuracy_bp: 9_000,
        max_p99_latency_us: 10_000,
        max_accuracy_drop_bp: 10_000,
    };
    let mut arena = [0u8; 64 * 1024];
    for f in &FIXTURES {
        let model = Model::parse(f.model).unwrap_or_else(|e| fail_err(f.name, e));
        let set = ValidationSet::parse(f.set).unwrap_or_else(|e| fail_err(f.name, e));
        let mut interp =
            Interpreter::new(&model, &mut arena).unwrap_or_else(|e| fail_err(f.name, e));
        let report = validation::run(&mut interp, &set, || ticks() * NS_PER_TICK)
            .unwrap_or_else(|e| fail_err(f.name, e));
        let v = judge(&report, &policy, None);
        hprintln!(
            "model={} bytes={} arena={} macs={} samples={} correct={} accuracy_bp={} p50_us={} p99_us={} max_us={} accuracy_ok={} latency_ok={} verdict={}",
            f.name,
            f.model.len(),
            model.arena_size,
            model.macs(),
            report.samples,
            report.correct,
            report.accuracy_bp,
            report.p50_us,
            report.p99_us,
            report.max_us,
            u8::from(v.accuracy_ok),
            u8::from(v.latency_ok),
            if v.passed() { "pass" } else { "fail" }
        );

        // Per-operator cost over the first samples.
        let mut op_ticks = [0u64; model::graph::MAX_OPS];
        for i in 0..PROFILE_SAMPLES.min(set.count) {
            let (_, input) = set.sample(i).unwrap_or_else(|| fail("sample"));
            interp
                .set_input(input)
                .unwrap_or_else(|e| fail_err(f.name, e));
            let mut last = ticks();
            interp
                .invoke_observed(|index, _, _| {
                    let now = ticks();
                    if let Some(t) = op_ticks.get_mut(index) {
                        *t += now - last;
                    }
                    last = now;
                })
                .unwrap_or_else(|e| fail_err(f.name, e));
        }
        for (index, op) in model.ops.iter().enumerate() {
            hprintln!(
                "op model={} index={} kind={} macs={} ticks={} runs={}",
                f.name,
                index,
                op.kind.name(),
                model.op_macs(index),
                op_ticks[index],
                PROFILE_SAMPLES.min(set.count)
            );
        }
    }
    hprintln!("done");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

fn fail_err(what: &str, e: model::Error) -> ! {
    hprintln!("error {}: {}", what, e);
    fail("model")
}

fn fail(what: &str) -> ! {
    hprintln!("failed: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    fail("panic")
}
