//! Model benchmark firmware (QEMU mps2-an386): runs every model of a job the host loaded into
//! memory, timing each inference by SysTick, checking its output bytes against the reference
//! outputs, and printing accuracy, the policy verdict and per-operator cost.
//!
//! # How models reach the firmware
//!
//! Nothing is compiled in: `cargo xtask bench-model` packs the models and their cases into one
//! job file and QEMU copies it to PSRAM (`-device loader,file=JOB,addr=0x21000000,force-raw=on`,
//! 16 MiB at 0x2100_0000 on mps2-an386) before the core starts, so one build runs any model
//! file. The job, all integers u32 little-endian:
//!
//! ```text
//! "MBJ1" total_len count 0            header, 16 bytes
//! count entries of 10 words:          offsets are from the start of the job
//!   model_off model_len               the .tflite
//!   vset_off vset_len                 a validation set (len 0: none): labels and inputs
//!   ref_off ref_len                   reference output rows, one per validation sample (or 0)
//!   io_off io_len                     cases (or 0): u32 count, then each case's input bytes,
//!                                     followed by its output bytes when flags bit 0 is set
//!   flags 0
//! ```
//!
//! Input and output bytes are the tensors' as `Interpreter::input_mut()` and `output()` hold
//! them (int8 raw, float32 little-endian).
//!
//! # Timing
//!
//! Under `-icount shift=4` every instruction takes 16 ns of virtual time (62.5 MIPS) and
//! SysTick counts the 25 MHz system clock (2.5 instructions a tick), so the figures are
//! deterministic. Only `invoke` is timed; the host turns ticks into instructions and
//! microseconds.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use model::{Interpreter, Model, Report, ValidationSet, judge};

const RELOAD: u32 = 0x00FF_FFFF;
/// SysTick runs at the 25 MHz system clock.
const NS_PER_TICK: u64 = 40;
/// Cases used for the per-operator profile.
const PROFILE_CASES: usize = 20;
/// Most cases of one model (one latency each is kept for the percentiles).
const MAX_CASES: usize = 1024;
/// Operators profiled one by one (later ones are timed with the model only).
const MAX_PROFILED_OPS: usize = 512;
/// Where QEMU's loader puts the job: the board's 16 MiB PSRAM.
const JOB_ADDR: usize = 0x2100_0000;
const JOB_MAX: usize = 16 * 1024 * 1024;
const HEADER: usize = 16;
const ENTRY: usize = 40;
/// The arena: far more than a device's, so the bench measures any model; the host reports
/// each model's own need (`arena_bytes`).
const ARENA: usize = 2 * 1024 * 1024;

static WRAPS: AtomicU32 = AtomicU32::new(0);
static mut ARENA_BYTES: [u8; ARENA] = [0; ARENA];

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

fn word(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..at + 4)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
}

/// The job QEMU loaded, checked against its own length.
fn job() -> &'static [u8] {
    // SAFETY: PSRAM is plain RAM nothing else in this program uses; QEMU filled it before reset.
    let head = unsafe { core::slice::from_raw_parts(JOB_ADDR as *const u8, HEADER) };
    if &head[..4] != b"MBJ1" {
        fail("no job at 0x21000000 (QEMU -device loader)");
    }
    let len = word(head, 4);
    if !(HEADER..=JOB_MAX).contains(&len) {
        fail("job length");
    }
    // SAFETY: as above, `len` bytes within the 16 MiB PSRAM.
    unsafe { core::slice::from_raw_parts(JOB_ADDR as *const u8, len) }
}

/// A part of the job named by an (offset, length) pair; empty when the length is 0.
fn part(job: &'static [u8], entry: &[u8], at: usize) -> Option<&'static [u8]> {
    let (off, len) = (word(entry, at), word(entry, at + 4));
    if len == 0 {
        return Some(&[]);
    }
    job.get(off..off.checked_add(len)?)
}

/// Where a model's cases come from.
struct Cases<'a> {
    count: usize,
    set: Option<ValidationSet<'a>>,
    /// Reference outputs, `count` rows (empty: unchecked).
    outputs: &'a [u8],
    /// Inputs of the .io cases, with each case's `stride` bytes (input, then output if any).
    io: &'a [u8],
    stride: usize,
}

impl<'a> Cases<'a> {
    fn input(&self, i: usize, input_len: usize) -> Option<&'a [u8]> {
        match &self.set {
            Some(set) => set.sample(i).map(|(_, input)| input),
            None => self.io.get(i * self.stride..i * self.stride + input_len),
        }
    }

    fn expected(&self, i: usize, input_len: usize, output_len: usize) -> Option<&'a [u8]> {
        if self.set.is_some() {
            return self.outputs.get(i * output_len..(i + 1) * output_len);
        }
        let at = i * self.stride + input_len;
        (self.stride > input_len)
            .then(|| self.io.get(at..at + output_len))
            .flatten()
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    // SAFETY: taken once, here; nothing else refers to the arena.
    let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA_BYTES) };
    // What the runtime's bounded tables cost in RAM on this target (ARCHITECTURE.md, model).
    hprintln!(
        "tables model_bytes={} tensor_bytes={} op_bytes={} max_tensors={} max_ops={}",
        core::mem::size_of::<model::Model<'static>>(),
        core::mem::size_of::<model::graph::Tensor<'static>>(),
        core::mem::size_of::<model::graph::Op>(),
        model::graph::MAX_TENSORS,
        model::graph::MAX_OPS
    );
    let job = job();
    let count = word(job, 8);
    for index in 0..count {
        let Some(entry) = job.get(HEADER + index * ENTRY..HEADER + (index + 1) * ENTRY) else {
            fail("job entries")
        };
        if let Err(why) = bench(index, job, entry, arena) {
            hprintln!("refused model={} reason={}", index, why);
        }
    }
    hprintln!("done");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Why a model of the job was not measured.
enum Why {
    Model(model::Error),
    Job(&'static str),
}

impl core::fmt::Display for Why {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Why::Model(e) => write!(f, "{e}"),
            Why::Job(what) => f.write_str(what),
        }
    }
}

impl From<model::Error> for Why {
    fn from(e: model::Error) -> Self {
        Why::Model(e)
    }
}

fn bench(index: usize, job: &'static [u8], entry: &[u8], arena: &mut [u8]) -> Result<(), Why> {
    let part = |at| part(job, entry, at).ok_or(Why::Job("job entry out of bounds"));
    let (bytes, set_bytes, ref_bytes, io) = (part(0)?, part(8)?, part(16)?, part(24)?);
    let io_outputs = word(entry, 32) & 1 == 1;

    let model = Model::parse(bytes)?;
    let mut interp = Interpreter::new(&model, arena)?;
    let input_len = interp.input_mut()?.len();
    let output_len = interp.output()?.len();

    let cases = if set_bytes.is_empty() {
        let count = word(io, 0);
        let stride = input_len + if io_outputs { output_len } else { 0 };
        if count == 0 || Some(io.len()) != count.checked_mul(stride).map(|n| n + 4) {
            return Err(Why::Job(
                "cases: length is not 4 + count x (input + output)",
            ));
        }
        Cases {
            count,
            set: None,
            outputs: &[],
            io: &io[4..],
            stride,
        }
    } else {
        let set = ValidationSet::parse(set_bytes)?;
        // As validation::run checks it: elements, classes and the inputs' type.
        if set.input_len != model.input_len()
            || set.classes != model.output_len()
            || set.input_type != interp.input_type()?
        {
            return Err(Why::Model(model::Error::ValidationSetMismatch));
        }
        if !ref_bytes.is_empty() && ref_bytes.len() != set.count * output_len {
            return Err(Why::Job("reference outputs: not one row per sample"));
        }
        Cases {
            count: set.count,
            set: Some(set),
            outputs: ref_bytes,
            io: &[],
            stride: 0,
        }
    };
    if cases.count > MAX_CASES {
        return Err(Why::Job("more cases than the bench keeps (1024)"));
    }

    let mut latencies = [0u32; MAX_CASES];
    let mut total = 0u64;
    let mut correct = 0u32;
    let mut checked = 0usize;
    let mut mismatched = 0usize;
    for i in 0..cases.count {
        let input = cases.input(i, input_len).ok_or(Why::Job("case input"))?;
        interp.set_input(input)?;
        let start = ticks();
        interp.invoke()?;
        let elapsed = ticks() - start;
        total += elapsed;
        latencies[i] = u32::try_from(elapsed).unwrap_or(u32::MAX);
        if let Some(set) = &cases.set {
            let (label, _) = set.sample(i).ok_or(Why::Job("case label"))?;
            correct += u32::from(interp.argmax()? == label);
        }
        if let Some(want) = cases.expected(i, input_len, output_len) {
            checked += 1;
            let got = interp.output()?;
            if let Some(byte) = (0..output_len).find(|&b| got[b] != want[b]) {
                if mismatched == 0 {
                    hprintln!(
                        "mismatch model={} case={} byte={} got={} want={}",
                        index,
                        i,
                        byte,
                        got[byte],
                        want[byte]
                    );
                }
                mismatched += 1;
            }
        }
    }
    let lat = &mut latencies[..cases.count];
    lat.sort_unstable();
    let n = cases.count;
    let rank = |pct: usize| u64::from(lat[(pct * n).div_ceil(100).max(1) - 1]);
    let us = |ticks: u64| u32::try_from(ticks * NS_PER_TICK / 1000).unwrap_or(u32::MAX);
    let (p50, p99, max) = (rank(50), rank(99), u64::from(lat[n - 1]));
    hprintln!(
        "model={} bytes={} arena={} macs={} cases={} correct={} checked={} mismatched={} ticks={} p50_ticks={} p99_ticks={} max_ticks={}",
        index,
        bytes.len(),
        model.arena_size,
        model.macs(),
        n,
        correct,
        checked,
        mismatched,
        total,
        p50,
        p99,
        max
    );
    if cases.set.is_some() {
        // The policy every model artifact carries by default: 90 % accuracy, p99 at most 10 ms.
        let policy = artifact::Policy {
            min_accuracy_bp: 9_000,
            max_p99_latency_us: 10_000,
            max_accuracy_drop_bp: 10_000,
        };
        let report = Report {
            samples: n as u32,
            correct,
            accuracy_bp: (u64::from(correct) * 10_000 / n as u64) as u16,
            p50_us: us(p50),
            p99_us: us(p99),
            max_us: us(max),
        };
        let v = judge(&report, &policy, None);
        hprintln!(
            "verdict model={} accuracy_bp={} accuracy_ok={} latency_ok={} verdict={}",
            index,
            report.accuracy_bp,
            u8::from(v.accuracy_ok),
            u8::from(v.latency_ok),
            if v.passed() { "pass" } else { "fail" }
        );
    }

    // Per-operator cost over the first cases.
    let mut op_ticks = [0u64; MAX_PROFILED_OPS];
    let runs = PROFILE_CASES.min(n);
    for i in 0..runs {
        let input = cases.input(i, input_len).ok_or(Why::Job("case input"))?;
        interp.set_input(input)?;
        let mut last = ticks();
        interp.invoke_observed(|op, _, _| {
            let now = ticks();
            if let Some(t) = op_ticks.get_mut(op) {
                *t += now - last;
            }
            last = now;
        })?;
    }
    for (i, op) in model.ops.iter().enumerate() {
        hprintln!(
            "op model={} index={} kind={} macs={} ticks={} runs={}",
            index,
            i,
            op.kind.name(),
            model.op_macs(i),
            op_ticks.get(i).copied().unwrap_or(0),
            runs
        );
    }
    Ok(())
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
