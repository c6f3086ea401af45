//! The power-loss matrix: scenarios x fault points x fault kinds x geometries.

use crate::device::Device;
use artifact::Version;
use bootloader::{Decision, Outcome};
use layout::{Layout, Region};
use norsim::{Fault, FaultKind, Rng};
use testkit::image::{SlotImage, signed_image};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioResult {
    pub name: String,
    pub geometry: String,
    pub cut_points: u64,
    pub failures: u64,
    /// The first failure, for the log.
    pub first_failure: Option<String>,
    /// Failures reported but not fatal (none since the bootloader's own ECC-safe state; kept
    /// in powerloss.json for its readers).
    pub known_limitation: bool,
}

impl ScenarioResult {
    /// Counts one cut point and its outcome; the first failure is kept, named by `at`.
    pub fn record(&mut self, at: impl core::fmt::Display, outcome: Result<(), String>) {
        self.cut_points += 1;
        if let Err(e) = outcome {
            self.failures += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(format!("{at}: {e}"));
            }
        }
    }
}

/// A flash geometry under test.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub name: &'static str,
    pub ecc: bool,
}

/// A small layout for a geometry: `pages` erase units of active slot, everything else minimal.
pub fn sim_layout(erase: u32, write: u32, pages: u32) -> Layout {
    let mut at = 0;
    let mut region = |units: u32| {
        let r = Region {
            offset: at,
            size: units * erase,
        };
        at += units * erase;
        r
    };
    // Two halves, each holding a whole update's log (layout::Layout::check).
    let unit = 8u32.div_ceil(write) * write;
    let state_units = 2 * ((4 * pages + 5) * unit).div_ceil(erase);
    let bootloader = Region { offset: 0, size: 0 };
    let state = region(state_units);
    let security_counter = region(2);
    let active = region(pages);
    let dfu = region(pages + 1);
    let model_a = region(1);
    let model_b = region(1);
    let kv = region(1);
    let identity = region(1);
    Layout {
        board: "sim",
        flash_size: at,
        erase_size: erase,
        write_size: write,
        bootloader,
        state,
        security_counter,
        active,
        dfu,
        model_a,
        model_b,
        kv,
        identity,
        image_header_size: 1024,
        load_address: Some(0x0010_0000),
        mapped_at: None,
    }
}

struct Images {
    a: SlotImage,
    b: SlotImage,
    /// B with one image byte changed after signing: fails its digest.
    b_bad: SlotImage,
}

fn images(layout: &Layout) -> Images {
    // Images fill most of the slot, as real ones do.
    let size = (layout.max_image_size() - layout.erase_size / 2) as usize;
    let a = signed_image(layout, Version::new(1, 0, 0), 1, size, 1);
    let b = signed_image(layout, Version::new(2, 0, 0), 2, size, 2);
    let mut b_bad = b.clone();
    let last = b_bad.bytes.len() - 1;
    b_bad.bytes[last] ^= 0x01;
    Images { a, b, b_bad }
}

type Step<const W: usize, const E: usize> = fn(&Device<W, E>) -> Result<(), String>;

fn boot_step<const W: usize, const E: usize>(d: &Device<W, E>) -> Result<(), String> {
    d.boot().map(|_| ()).map_err(|e| e.to_string())
}

fn confirm_step<const W: usize, const E: usize>(d: &Device<W, E>) -> Result<(), String> {
    d.confirm().map_err(|e| format!("{e:?}"))?;
    boot_step(d)
}

/// After power returns: boot until the device settles on a confirmed image, confirming what
/// runs on trial or after a revert (as a healthy application does). Every boot must run A or B.
fn settle<const W: usize, const E: usize>(
    d: &Device<W, E>,
    im: &Images,
    allowed_final: &[[u8; 32]],
) -> Result<Decision, String> {
    let known = [im.a.digest, im.b.digest];
    for _ in 0..4 {
        let decision = d.boot().map_err(|e| format!("no image boots: {e}"))?;
        if !known.contains(&decision.image.digest) {
            return Err("booted an image that is neither the old nor the new one".into());
        }
        match decision.outcome {
            Outcome::Confirmed => {
                if !allowed_final.contains(&decision.image.digest) {
                    return Err(format!("settled on version {}", decision.image.version));
                }
                // Stable: the next boot runs the same image, confirmed.
                let again = d.boot().map_err(|e| format!("second boot: {e}"))?;
                if again.image != decision.image || again.outcome != Outcome::Confirmed {
                    return Err("not stable after settling".into());
                }
                return Ok(decision);
            }
            Outcome::Trial | Outcome::Reverted => {
                d.confirm().map_err(|e| format!("confirm: {e:?}"))?
            }
            Outcome::Fallback => {
                return Err("active slot unusable: fell back to the DFU slot".into());
            }
        }
    }
    Err("did not settle in four boots".into())
}

/// Runs `step` from `start` with a fault at every operation it performs (both kinds).
fn matrix<const W: usize, const E: usize>(
    name: &str,
    geometry: &Geometry,
    start: &Device<W, E>,
    step: Step<W, E>,
    im: &Images,
    allowed_final: &[[u8; 32]],
) -> ScenarioResult {
    let probe = start.clone();
    let before = probe.ops();
    let clean = step(&probe);
    let n = probe.ops() - before;
    let mut result = ScenarioResult {
        name: name.into(),
        geometry: geometry.name.into(),
        cut_points: 0,
        failures: 0,
        first_failure: None,
        known_limitation: false,
    };
    if let Err(e) = clean {
        result.failures = 1;
        result.first_failure = Some(format!("fault-free run failed: {e}"));
        return result;
    }
    for k in 0..n {
        for kind in [FaultKind::Cut, FaultKind::Tear] {
            let d = start.clone();
            d.with_flash(|f| *f = f.clone().with_seed(k * 2 + kind as u64 + 1));
            d.plan(Fault { at: k, kind });
            let _ = step(&d);
            d.power_on();
            result.record(
                format_args!("{kind:?} at operation {k}"),
                settle(&d, im, allowed_final).map(drop),
            );
        }
    }
    result
}

/// Random runs with several faults each: an update's whole life with power cut anywhere,
/// including during the recovery from an earlier cut.
fn random_runs<const W: usize, const E: usize>(
    geometry: &Geometry,
    layout: &Layout,
    im: &Images,
    runs: u64,
) -> ScenarioResult {
    let mut result = ScenarioResult {
        name: "random-multi-fault".into(),
        geometry: geometry.name.into(),
        cut_points: 0,
        failures: 0,
        first_failure: None,
        known_limitation: false,
    };
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut next = move |m: u64| rng.below(m);
    for run in 0..runs {
        let d = Device::<W, E>::new(*layout, &im.a, geometry.ecc);
        let failure = (|| -> Result<(), String> {
            d.stage(&im.b).map_err(|e| format!("stage: {e:?}"))?;
            let mut confirmed_after_update = false;
            for _ in 0..12 {
                if next(2) == 0 {
                    d.plan(Fault {
                        at: next(300),
                        kind: if next(2) == 0 {
                            FaultKind::Cut
                        } else {
                            FaultKind::Tear
                        },
                    });
                    result.cut_points += 1;
                }
                let decision = match d.boot() {
                    Ok(x) => x,
                    Err(_) if !d.with_flash(|f| f.powered()) => {
                        d.power_on();
                        continue;
                    }
                    Err(e) => return Err(format!("boot: {e}")),
                };
                if ![im.a.digest, im.b.digest].contains(&decision.image.digest) {
                    return Err("unknown image".into());
                }
                match decision.outcome {
                    Outcome::Confirmed if confirmed_after_update => return Ok(()),
                    Outcome::Confirmed => {}
                    Outcome::Fallback => return Err("fell back to DFU".into()),
                    Outcome::Trial | Outcome::Reverted => {}
                }
                if d.confirm().is_err() {
                    d.power_on();
                    continue;
                }
                confirmed_after_update = true;
            }
            d.power_on();
            settle(&d, im, &[im.a.digest, im.b.digest]).map(|_| ())
        })();
        if let Err(e) = failure {
            result.failures += 1;
            if result.first_failure.is_none() {
                result.first_failure = Some(format!("run {run}: {e}"));
            }
        }
    }
    result
}

fn geometry_scenarios<const W: usize, const E: usize>(
    geometry: Geometry,
    pages: u32,
    random: u64,
) -> Vec<ScenarioResult> {
    let layout = sim_layout(E as u32, W as u32, pages);
    let im = images(&layout);
    let installed = Device::<W, E>::new(layout, &im.a, geometry.ecc);

    let staged = installed.clone();
    staged.stage(&im.b).expect("stage B");
    let trial = staged.clone();
    let d = trial.boot().expect("swap");
    assert_eq!(
        (d.outcome, d.image.digest),
        (Outcome::Trial, im.b.digest),
        "fault-free swap"
    );
    let bad_staged = installed.clone();
    bad_staged.stage(&im.b_bad).expect("stage bad B");

    let both = [im.a.digest, im.b.digest];
    vec![
        matrix("update-swap", &geometry, &staged, boot_step, &im, &both),
        matrix(
            "revert-unconfirmed",
            &geometry,
            &trial,
            boot_step,
            &im,
            &[im.a.digest],
        ),
        matrix("confirm", &geometry, &trial, confirm_step, &im, &both),
        matrix(
            "revert-bad-image",
            &geometry,
            &bad_staged,
            boot_step,
            &im,
            &[im.a.digest],
        ),
        random_runs::<W, E>(&geometry, &layout, &im, random),
    ]
}

/// Every scenario on every geometry. `quick` shrinks slots and random runs (tests, CI).
pub fn run_all(quick: bool) -> Vec<ScenarioResult> {
    let (pages, big_pages, random) = if quick { (4, 2, 20) } else { (16, 2, 200) };
    let mut out = Vec::new();
    out.extend(geometry_scenarios::<4, 4096>(GEOMETRIES[0], pages, random));
    out.extend(geometry_scenarios::<8, 2048>(
        GEOMETRIES[1],
        pages * 2,
        random,
    ));
    out.extend(geometry_scenarios::<4, 131_072>(
        GEOMETRIES[2],
        big_pages,
        random / 4,
    ));
    out.extend(geometry_scenarios::<8, 4096>(GEOMETRIES[3], pages, random));
    out.extend(geometry_scenarios::<16, 8192>(GEOMETRIES[4], pages, random));
    out.extend(geometry_scenarios::<32, 131_072>(
        GEOMETRIES[5],
        big_pages,
        random / 4,
    ));
    out
}

/// The geometries of the matrix: three of ordinary NOR, then flash with ECC (no word
/// programmed twice, a torn word reads as an error) with 8-byte (STM32L4, the STM32L4R5's
/// 4 KiB dual-bank pages), 16-byte and 32-byte (STM32H7, 128 KiB sectors) write units.
pub const GEOMETRIES: [Geometry; 6] = [
    Geometry {
        name: "4KiB-pages/4B-writes",
        ecc: false,
    },
    Geometry {
        name: "2KiB-pages/8B-writes",
        ecc: false,
    },
    Geometry {
        name: "128KiB-sectors/4B-writes",
        ecc: false,
    },
    Geometry {
        name: "4KiB-pages/8B-writes/ECC",
        ecc: true,
    },
    Geometry {
        name: "8KiB-pages/16B-writes/ECC",
        ecc: true,
    },
    Geometry {
        name: "128KiB-sectors/32B-writes/ECC",
        ecc: true,
    },
];

/// STM32L4R5 data sheet (DS12023), typical: page erase 22.02 ms, one 64-bit double word
/// programmed in 81.7 us. `estimated_ms` of a swap counts its erases and its bytes at these.
pub const L4R5_PAGE_ERASE_MS: f64 = 22.02;
pub const L4R5_DOUBLE_WORD_US: f64 = 81.7;

/// Flash work of the boot that performs one swap (or one revert), as `cargo xtask powerloss`
/// reports it in `swap_cost[]` and `revert_cost[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapCost {
    pub geometry: &'static str,
    pub image_bytes: u64,
    pub slot_bytes: u64,
    pub erases: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub estimated_ms: f64,
}

fn cost_of(
    geometry: &'static str,
    image_bytes: usize,
    slot_bytes: u32,
    c: norsim::Counters,
) -> SwapCost {
    SwapCost {
        geometry,
        image_bytes: image_bytes as u64,
        slot_bytes: u64::from(slot_bytes),
        erases: c.erases,
        writes: c.writes,
        bytes_written: c.bytes_written,
        estimated_ms: c.erases as f64 * L4R5_PAGE_ERASE_MS
            + c.bytes_written.div_ceil(8) as f64 * L4R5_DOUBLE_WORD_US / 1000.0,
    }
}

fn delta(after: norsim::Counters, before: norsim::Counters) -> norsim::Counters {
    norsim::Counters {
        erases: after.erases - before.erases,
        writes: after.writes - before.writes,
        bytes_written: after.bytes_written - before.bytes_written,
        reads: after.reads - before.reads,
    }
}

/// The swap of a staged `image_bytes` image over an installed one of the same size in a
/// 128 KiB slot (one 128 KiB sector on such flash), and the revert of that unconfirmed trial.
fn swap_and_revert<const W: usize, const E: usize>(
    geometry: &Geometry,
    image_bytes: Option<usize>,
) -> (SwapCost, SwapCost) {
    let layout = sim_layout(E as u32, W as u32, (128 * 1024 / E as u32).max(1));
    let size = image_bytes.unwrap_or(layout.max_image_size() as usize);
    let old = signed_image(&layout, Version::new(1, 0, 0), 1, size, 1);
    let new = signed_image(&layout, Version::new(2, 0, 0), 2, size, 2);
    let d = Device::<W, E>::new(layout, &old, geometry.ecc);
    d.stage(&new).expect("stage");
    let before = d.with_flash(|f| f.counters());
    let trial = d.boot().expect("swap");
    assert_eq!(
        (trial.outcome, trial.image.digest),
        (Outcome::Trial, new.digest)
    );
    let swapped = d.with_flash(|f| f.counters());
    let back = d.boot().expect("revert");
    assert_eq!(
        (back.outcome, back.image.digest),
        (Outcome::Reverted, old.digest)
    );
    let reverted = d.with_flash(|f| f.counters());
    (
        cost_of(
            geometry.name,
            size,
            layout.active.size,
            delta(swapped, before),
        ),
        cost_of(
            geometry.name,
            size,
            layout.active.size,
            delta(reverted, swapped),
        ),
    )
}

/// `swap_and_revert` for a 16 KiB, a 64 KiB and a full-slot image on every geometry.
pub fn swap_costs() -> (Vec<SwapCost>, Vec<SwapCost>) {
    let mut swaps = Vec::new();
    let mut reverts = Vec::new();
    for image in [Some(16 * 1024), Some(64 * 1024), None] {
        for (s, r) in [
            swap_and_revert::<4, 4096>(&GEOMETRIES[0], image),
            swap_and_revert::<8, 2048>(&GEOMETRIES[1], image),
            swap_and_revert::<4, 131_072>(&GEOMETRIES[2], image),
            swap_and_revert::<8, 4096>(&GEOMETRIES[3], image),
            swap_and_revert::<16, 8192>(&GEOMETRIES[4], image),
            swap_and_revert::<32, 131_072>(&GEOMETRIES[5], image),
        ] {
            swaps.push(s);
            reverts.push(r);
        }
    }
    (swaps, reverts)
}

/// Flash work of one whole update (stage, swap, confirm, next boot) on a board's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCost {
    pub image_bytes: u64,
    pub slot_bytes: u64,
    pub erases: u64,
    pub writes: u64,
    pub bytes_written: u64,
}

pub fn update_cost(layout: &Layout, image_bytes: usize) -> UpdateCost {
    let old = signed_image(layout, Version::new(1, 0, 0), 1, image_bytes, 1);
    let new = signed_image(layout, Version::new(2, 0, 0), 2, image_bytes, 2);
    let d = Device::<4, 4096>::new(*layout, &old, false);
    let before = d.with_flash(|f| f.counters());
    d.stage(&new).expect("stage");
    d.boot().expect("swap");
    d.confirm().expect("confirm");
    let last = d.boot().expect("boot");
    assert_eq!(
        (last.outcome, last.image.digest),
        (Outcome::Confirmed, new.digest)
    );
    let after = d.with_flash(|f| f.counters());
    UpdateCost {
        image_bytes: image_bytes as u64,
        slot_bytes: u64::from(layout.active.size),
        erases: after.erases - before.erases,
        writes: after.writes - before.writes,
        bytes_written: after.bytes_written - before.bytes_written,
    }
}
