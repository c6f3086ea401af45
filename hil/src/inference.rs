//! What a board's console says about its inference loop, judged from whole stamped lines: the
//! count never goes back within a boot, a missing count line is a lost line (tolerated, logged),
//! and a count that does not rise for longer than a bound while the scenario goes on is a
//! stalled loop (refused). The firmware prints `agent: inferences N` every 10 inferences (one per
//! 500 ms of emulated time), and the count in its validating, switched and kept lines.

use std::time::Duration;

/// One whole console line and when the harness read it, from the start of the stretch checked.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub at: Duration,
    pub text: &'a str,
}

/// A validation the console shows: the count when it began, and how it ended with the count
/// then (`switched` or `kept`), if it ended within the stretch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub began: u64,
    pub ended: Option<(&'static str, u64)>,
}

/// The loop's figures over a stretch that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inferences {
    /// Every count printed, in order.
    pub counts: Vec<u64>,
    /// Multiples of 10 the loop passed outside a validation without their line appearing.
    pub lost: Vec<u64>,
    pub validations: Vec<Validation>,
    /// The longest time the count went without rising (up to the end of the stretch).
    pub longest_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `agent: inferences N`, printed by the loop as the count reaches a multiple of 10.
    Periodic,
    Validating,
    Ended(&'static str),
}

enum Line {
    Count(Kind, u64),
    Boot,
    Other,
}

const COUNTS: [(&str, Kind); 4] = [
    ("agent: inferences ", Kind::Periodic),
    ("agent: validating, inferences ", Kind::Validating),
    (
        "agent: switched model, inferences ",
        Kind::Ended("switched"),
    ),
    ("agent: kept model, inferences ", Kind::Ended("kept")),
];

fn parse(text: &str) -> Result<Line, String> {
    if text.starts_with("boot: ") {
        return Ok(Line::Boot);
    }
    for (prefix, kind) in COUNTS {
        if let Some(n) = text.strip_prefix(prefix) {
            // Lines are whole, so a count that does not parse is the firmware's error.
            let n = n
                .parse()
                .map_err(|_| format!("unreadable count line {text:?}"))?;
            return Ok(Line::Count(kind, n));
        }
    }
    Ok(Line::Other)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Checks the loop over `lines` (a stretch of one board's console, ending at `end`): the count
/// must not go back within a boot (a periodic line must be above the count before it), and must
/// rise at least every `stall` (from the stretch's start or a boot line to the first count,
/// between counts, and from the last rise to `end`). With `done` (when a rollout completed), the
/// count must also have risen after it.
pub fn check(
    lines: &[Seen<'_>],
    done: Option<Duration>,
    end: Duration,
    stall: Duration,
) -> Result<Inferences, String> {
    let mut out = Inferences {
        counts: Vec::new(),
        lost: Vec::new(),
        validations: Vec::new(),
        longest_wait: Duration::ZERO,
    };
    let (mut prev, mut open, mut last_rise, mut others) = (None::<u64>, false, Duration::ZERO, 0);
    let mut rose_after_done = false;
    let stalled = |count: Option<u64>, from: Duration, to: Duration, others: usize| {
        let held = count.map_or_else(
            || "no count printed".to_owned(),
            |n| format!("count at {n}"),
        );
        format!(
            "inference loop stalled: {held} for {} (from {} to {} of the stretch; bound {}, \
             a count line is due every 10 inferences, 5 s of emulated time) while the board \
             printed {others} other line(s)",
            secs(to - from),
            secs(from),
            secs(to),
            secs(stall)
        )
    };
    for line in lines {
        let (kind, n) = match parse(line.text)? {
            Line::Other => {
                others += 1;
                continue;
            }
            Line::Boot => {
                // A new boot counts from 0 again; its loop starts now.
                (prev, open, last_rise, others) = (None, false, line.at, 0);
                continue;
            }
            Line::Count(kind, n) => (kind, n),
        };
        if kind == Kind::Periodic && n % 10 != 0 {
            return Err(format!("periodic count {n} is not a multiple of 10"));
        }
        if let Some(p) = prev {
            if n < p || (kind == Kind::Periodic && n == p) {
                return Err(format!(
                    "inference counter went back or repeated within one boot: {:?} then {n} \
                     ({:?} at {})",
                    out.counts,
                    line.text,
                    secs(line.at)
                ));
            }
            // A validation runs the loop without printing its periodic lines; elsewhere each
            // multiple of 10 has its line before any later count.
            if !(open && matches!(kind, Kind::Ended(_))) {
                let last = if kind == Kind::Periodic { n - 1 } else { n };
                out.lost.extend((p / 10 + 1..=last / 10).map(|k| k * 10));
            }
        }
        if prev.is_none_or(|p| n > p) {
            let wait = line.at.saturating_sub(last_rise);
            if wait > stall {
                return Err(stalled(prev, last_rise, line.at, others));
            }
            out.longest_wait = out.longest_wait.max(wait);
            last_rise = line.at;
            others = 0;
            rose_after_done |= done.is_some_and(|d| line.at > d);
        }
        match kind {
            Kind::Validating => {
                open = true;
                out.validations.push(Validation {
                    began: n,
                    ended: None,
                });
            }
            Kind::Ended(how) if open => {
                open = false;
                if let Some(v) = out.validations.last_mut() {
                    v.ended = Some((how, n));
                }
            }
            _ => {}
        }
        out.counts.push(n);
        prev = Some(n);
    }
    let wait = end.saturating_sub(last_rise);
    if wait > stall {
        return Err(stalled(prev, last_rise, end, others));
    }
    out.longest_wait = out.longest_wait.max(wait);
    if let (Some(d), false) = (done, rose_after_done) {
        return Err(format!(
            "inference loop stalled: the count did not rise after the rollout completed at {} \
             (counts {:?}, checked at {}, {others} other line(s) since the last rise)",
            secs(d),
            out.counts,
            secs(end)
        ));
    }
    Ok(out)
}

/// Whether the count rose after `done` (what a scenario waits for before `check`).
pub fn risen_after(lines: &[Seen<'_>], done: Duration) -> bool {
    let mut prev = None::<u64>;
    for line in lines {
        match parse(line.text) {
            Ok(Line::Count(_, n)) => {
                if line.at > done && prev.is_none_or(|p| n > p) {
                    return true;
                }
                prev = Some(n);
            }
            Ok(Line::Boot) => prev = None,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);

    fn at(s: u64, text: &str) -> Seen<'_> {
        Seen {
            at: Duration::from_secs(s),
            text,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_missing_count_line_is_accepted_and_reported_lost() {
        let lines = [
            at(5, "agent: inferences 90"),
            at(10, "agent: inferences 100"),
            at(20, "agent: inferences 120"),
            at(21, "agent: validating, inferences 121"),
            // 130 passed inside the validation: not printed by design, not lost.
            at(26, "agent: switched model, inferences 131"),
            at(26, "agent: switched model"),
            at(30, "agent: inferences 140"),
            // 150 and 160 lost, and 170 too: a validation's first line comes after the loop's.
            at(45, "agent: validating, inferences 170"),
            at(46, "agent: kept model, inferences 171"),
        ];
        let got = check(&lines, Some(secs(25)), secs(50), STALL).unwrap();
        assert_eq!(
            got,
            Inferences {
                counts: vec![90, 100, 120, 121, 131, 140, 170, 171],
                lost: vec![110, 150, 160, 170],
                validations: vec![
                    Validation {
                        began: 121,
                        ended: Some(("switched", 131))
                    },
                    Validation {
                        began: 170,
                        ended: Some(("kept", 171))
                    }
                ],
                longest_wait: secs(15),
            }
        );
    }

    #[test]
    fn a_count_that_stops_rising_while_other_lines_come_is_a_stall() {
        let lines = [
            at(0, "agent: inferences 100"),
            at(5, "agent: inferences 110"),
            at(10, "agent: fetching release 2 as a delta"),
            at(30, "agent: validating, inferences 110"),
            at(40, "agent: switched model, inferences 110"),
            at(40, "agent: switched model"),
            at(45, "agent: inferences 120"),
        ];
        let err = check(&lines[..4], None, secs(36), STALL).unwrap_err();
        assert_eq!(
            err,
            "inference loop stalled: count at 110 for 31.0 s (from 5.0 s to 36.0 s of the \
             stretch; bound 30.0 s, a count line is due every 10 inferences, 5 s of emulated \
             time) while the board printed 1 other line(s)"
        );
        // A rise that comes too late is refused as well, with the lines printed meanwhile.
        let err = check(&lines, None, secs(46), STALL).unwrap_err();
        assert!(
            err.starts_with(
                "inference loop stalled: count at 110 for 40.0 s (from 5.0 s to 45.0 s"
            ) && err.ends_with("printed 2 other line(s)"),
            "{err}"
        );
        // Within the bound it passes, with its longest wait.
        let got = check(&lines[..4], None, secs(34), STALL).unwrap();
        assert_eq!(got.longest_wait, secs(29));
    }

    #[test]
    fn the_count_must_rise_after_the_rollout_completed() {
        let lines = [
            at(0, "agent: inferences 260"),
            at(5, "agent: inferences 270"),
            at(9, "agent: up"),
        ];
        let err = check(&lines, Some(secs(8)), secs(12), STALL).unwrap_err();
        assert!(
            err.starts_with("inference loop stalled: the count did not rise after the rollout completed at 8.0 s"),
            "{err}"
        );
        assert!(!risen_after(&lines, secs(8)));
        let more = [
            lines[0],
            lines[1],
            lines[2],
            at(10, "agent: inferences 280"),
        ];
        assert!(risen_after(&more, secs(8)));
        assert_eq!(
            check(&more, Some(secs(8)), secs(12), STALL).unwrap().counts,
            [260, 270, 280]
        );
    }

    #[test]
    fn a_count_going_back_within_a_boot_is_refused_and_a_new_boot_starts_over() {
        let back = [
            at(0, "agent: inferences 130"),
            at(5, "agent: inferences 120"),
        ];
        let err = check(&back, None, secs(6), STALL).unwrap_err();
        assert_eq!(
            err,
            "inference counter went back or repeated within one boot: [130] then 120 \
             (\"agent: inferences 120\" at 5.0 s)"
        );
        let repeated = [
            at(0, "agent: inferences 130"),
            at(5, "agent: inferences 130"),
        ];
        assert!(check(&repeated, None, secs(6), STALL).is_err());
        let validation_back = [
            at(0, "agent: validating, inferences 131"),
            at(5, "agent: switched model, inferences 130"),
        ];
        assert!(check(&validation_back, None, secs(6), STALL).is_err());
        let rebooted = [
            at(0, "agent: inferences 130"),
            at(5, "boot: trial 2.0.0 counter 2 size 200592"),
            at(12, "agent: inferences 10"),
        ];
        assert_eq!(
            check(&rebooted, None, secs(14), STALL).unwrap().counts,
            [130, 10]
        );
    }

    #[test]
    fn a_half_line_is_never_parsed() {
        // What a read in the middle of "agent: inferences 270\n" held: the splitter keeps it
        // back, so the check sees only the whole line once it ends.
        let mut s = crate::console::LineSplitter::default();
        let half = s.push(b"agent: inferences 260\nagent: inferences 2");
        assert_eq!(half, ["agent: inferences 260"]);
        let seen: Vec<Seen<'_>> = half.iter().map(|t| at(0, t)).collect();
        assert_eq!(check(&seen, None, secs(1), STALL).unwrap().counts, [260]);
        let whole = s.push(b"70\n");
        assert_eq!(whole, ["agent: inferences 270"]);
        // Were a half line handed out, it would not pass for a count.
        let err = check(
            &[at(0, "agent: inferences 260"), at(1, "agent: inferences ")],
            None,
            secs(2),
            STALL,
        )
        .unwrap_err();
        assert_eq!(err, "unreadable count line \"agent: inferences \"");
        assert!(check(&[at(0, "agent: inferences 2")], None, secs(1), STALL).is_err());
    }
}
