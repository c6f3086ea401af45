//! Boot decisions on a simulated device: what is refused, what is reverted, what runs.

use artifact::Version;
use bootloader::{Error, Outcome, SecurityCounter, Slot};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use layout::Layout;
use powerloss::device::Device;
use powerloss::scenarios::sim_layout;
use testkit::image::{SlotImage, signed_image};

fn layout() -> Layout {
    sim_layout(4096, 4, 8)
}

fn image(version: u32, counter: u64, seed: u8) -> SlotImage {
    signed_image(
        &layout(),
        Version::new(version, 0, 0),
        counter,
        20_000,
        seed,
    )
}

fn device(installed: &SlotImage) -> Device<4, 4096> {
    Device::new(layout(), installed, false)
}

#[test]
fn an_update_swaps_runs_on_trial_and_is_confirmed() {
    let (a, b) = (image(1, 1, 1), image(2, 2, 2));
    let d = device(&a);
    let first = d.boot().unwrap();
    assert_eq!(
        (first.outcome, first.image.digest, first.slot),
        (Outcome::Confirmed, a.digest, Slot::Active)
    );
    d.stage(&b).unwrap();
    let trial = d.boot().unwrap();
    assert_eq!(
        (trial.outcome, trial.image.digest),
        (Outcome::Trial, b.digest)
    );
    assert_eq!(trial.image.version, Version::new(2, 0, 0));
    d.confirm().unwrap();
    let after = d.boot().unwrap();
    assert_eq!(
        (after.outcome, after.image.digest),
        (Outcome::Confirmed, b.digest)
    );
}

#[test]
fn an_unconfirmed_trial_is_reverted_at_the_next_reset() {
    let (a, b) = (image(1, 1, 1), image(2, 2, 2));
    let d = device(&a);
    d.stage(&b).unwrap();
    assert_eq!(d.boot().unwrap().outcome, Outcome::Trial);
    // The application hangs or fails its checks: no confirm, the watchdog resets.
    let back = d.boot().unwrap();
    assert_eq!(
        (back.outcome, back.image.digest),
        (Outcome::Reverted, a.digest)
    );
    d.confirm().unwrap();
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed);
}

#[test]
fn a_bad_signature_is_never_booted() {
    let a = image(1, 1, 1);
    let mut b = image(2, 2, 2);
    // Flip a bit of the signature inside the header's envelope (its last bytes).
    let env_len = u32::from_le_bytes(b.bytes[8..12].try_into().unwrap()) as usize;
    b.bytes[16 + env_len - 1] ^= 0x80;
    let d = device(&a);
    d.stage(&b).unwrap();
    let decision = d.boot().unwrap();
    assert_eq!(
        (decision.outcome, decision.image.digest),
        (Outcome::Reverted, a.digest)
    );
}

#[test]
fn a_lower_security_counter_is_refused_after_a_confirm() {
    let (a, b) = (image(1, 1, 1), image(2, 5, 2));
    let d = device(&a);
    d.stage(&b).unwrap();
    d.boot().unwrap();
    d.confirm().unwrap();
    assert_eq!(d.boot().unwrap().outcome, Outcome::Confirmed); // stores counter 5
    let old = image(3, 4, 3); // newer version, older counter
    d.stage(&old).unwrap();
    let decision = d.boot().unwrap();
    assert_eq!(
        (decision.outcome, decision.image.digest),
        (Outcome::Reverted, b.digest)
    );
    // Checked directly: the active-slot check refuses it with Downgrade.
    let fresh = device(&old);
    // Raise the stored counter past the installed image's.
    let counter_region = layout().security_counter;
    let mut c = SecurityCounter::new(BlockingPartition::new(
        &fresh.flash,
        counter_region.offset,
        counter_region.size,
    ))
    .unwrap();
    c.raise(9).unwrap();
    assert_eq!(fresh.boot().unwrap_err(), Error::Downgrade);
}

#[test]
fn an_image_for_another_board_is_refused() {
    let a = image(1, 1, 1);
    let mut other = layout();
    other.board = "nrf52840-dk";
    let b = signed_image(&other, Version::new(2, 0, 0), 2, 20_000, 2);
    let d = device(&a);
    d.stage(&b).unwrap();
    let decision = d.boot().unwrap();
    assert_eq!(
        (decision.outcome, decision.image.digest),
        (Outcome::Reverted, a.digest)
    );
}

#[test]
fn a_ram_load_board_falls_back_to_a_valid_dfu_image() {
    let (a, b) = (image(1, 1, 1), image(2, 2, 2));
    let d = device(&a);
    d.stage(&b).unwrap();
    d.boot().unwrap();
    d.confirm().unwrap(); // B active, A in DFU
    // The active slot's image is damaged in place.
    let at = layout().active.offset as usize + layout().image_header_size as usize + 100;
    d.with_flash(|f| f.preload(at, &[0x00]));
    let decision = d.boot().unwrap();
    assert_eq!(
        (decision.slot, decision.outcome),
        (Slot::Dfu, Outcome::Fallback)
    );
    assert_eq!(decision.image.digest, a.digest);
    // The previous image sits one page into the DFU slot after a swap.
    assert_eq!(decision.region.offset, layout().dfu.offset + 4096);
}

#[test]
fn an_empty_flash_has_no_valid_image() {
    let l = layout();
    let d = Device::<4, 4096>::new(
        l,
        &SlotImage {
            bytes: vec![],
            digest: [0; 32],
            version: Version::new(0, 0, 0),
        },
        false,
    );
    assert_eq!(d.boot().unwrap_err(), Error::NoValidImage);
}

#[test]
fn the_counter_survives_many_raises_across_its_two_sectors() {
    let d = device(&image(1, 1, 1));
    let r = layout().security_counter;
    let mut c = SecurityCounter::new(BlockingPartition::new(&d.flash, r.offset, r.size)).unwrap();
    assert_eq!(c.get().unwrap(), 0);
    // 4 KiB sectors of 16-byte records: 256 per sector; go round both sectors twice.
    for v in 1..=1100u64 {
        c.raise(v).unwrap();
        c.raise(v - 1).unwrap(); // never lowers
    }
    assert_eq!(c.get().unwrap(), 1100);
}

#[test]
fn the_matrix_quick_has_no_failures_on_any_geometry() {
    let results = powerloss::run_all(true);
    assert_eq!(results.len(), 30);
    for r in &results {
        assert!(r.cut_points > 0, "{} {}", r.name, r.geometry);
        assert!(!r.known_limitation);
        assert_eq!(
            r.failures, 0,
            "{} on {}: {:?}",
            r.name, r.geometry, r.first_failure
        );
    }
}

#[test]
fn a_torn_counter_record_on_ecc_flash_is_skipped_and_never_programmed_again() {
    use norsim::{Fault, FaultKind, NorSim};
    let mut flash = NorSim::<8, 4096>::new(8192).with_ecc(true).with_seed(7);
    {
        let mut c = SecurityCounter::new(&mut flash).unwrap();
        c.raise(3).unwrap();
    }
    flash.plan(Fault {
        at: 0,
        kind: FaultKind::Tear,
    });
    {
        let mut c = SecurityCounter::new(&mut flash).unwrap();
        assert!(c.raise(4).is_err());
    }
    flash.power_on();
    assert_eq!(
        flash.torn_words().count(),
        1,
        "the record's word in progress"
    );
    let mut c = SecurityCounter::new(&mut flash).unwrap();
    assert_eq!(c.get().unwrap(), 3, "the torn record is not a record");
    // The next raise goes to a fresh slot: the model refuses any second programming.
    c.raise(4).unwrap();
    assert_eq!(c.get().unwrap(), 4);
}

#[test]
fn garbage_in_the_state_counter_and_dfu_slot_boots_the_good_image() {
    let (a, b) = (image(1, 1, 1), image(2, 2, 2));
    let l = layout();
    let mut rng = norsim::Rng::new(17);
    for round in 0..200u64 {
        let d = device(&a);
        if round % 2 == 0 {
            d.stage(&b).unwrap();
        }
        // Random bytes over one of the regions the bootloader reads, or over a state log's
        // records (valid header, garbage after it).
        let (region, skip) = match round % 4 {
            0 => (l.state, 0),
            1 => (l.state, 8),
            2 => (l.security_counter, 0),
            _ => (l.dfu, 0),
        };
        let len = (rng.below(u64::from(region.size) - skip) + 1) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        d.with_flash(|f| {
            let at = region.offset as usize + skip as usize;
            let mixed: Vec<u8> = f.bytes()[at..at + len]
                .iter()
                .zip(&garbage)
                .map(|(old, g)| old & g)
                .collect();
            f.preload(at, &mixed);
        });
        for _ in 0..3 {
            let decision = d.boot().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(
                [a.digest, b.digest].contains(&decision.image.digest),
                "round {round}"
            );
            d.confirm()
                .unwrap_or_else(|e| panic!("round {round}: confirm {e}"));
        }
    }
}

#[test]
fn a_small_image_swaps_in_thirty_flash_operations() {
    let (swaps, reverts) = powerloss::swap_costs();
    let find = |list: &[powerloss::SwapCost], image: u64| {
        list.iter()
            .find(|c| c.geometry == "4KiB-pages/4B-writes" && c.image_bytes == image)
            .map(|c| (c.slot_bytes, c.erases, c.writes))
    };
    // 1 KiB header + 16 KiB image: 5 pages, 2 steps a page, each an erase, a page and a record.
    assert_eq!(find(&swaps, 16 * 1024), Some((128 * 1024, 10, 20)));
    assert_eq!(find(&reverts, 16 * 1024), Some((128 * 1024, 10, 20)));
    // A full slot moves its 32 pages, 192 operations: what the whole-partition swap cost.
    assert_eq!(find(&swaps, 127 * 1024), Some((128 * 1024, 64, 128)));
}
