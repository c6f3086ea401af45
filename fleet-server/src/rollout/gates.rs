//! Each gate of a stage checked against its devices' results, free of I/O: the figure it
//! compares, the threshold, the verdict, and the evidence when it fails. The engine halts on
//! these checks and the stage view carries them, so the dashboard and `fleetctl` show the
//! verdict the engine reached instead of computing their own.

use super::decide::{DeviceResult, Gates, Progress};
use serde::Serialize;

/// A gate, named as halts and the API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    MinAccuracy,
    MaxP99Latency,
    MaxFailureRate,
    MinReports,
    MaxAccuracyDrop,
}

impl Gate {
    pub const fn name(self) -> &'static str {
        match self {
            Gate::MinAccuracy => "min_accuracy",
            Gate::MaxP99Latency => "max_p99_latency",
            Gate::MaxFailureRate => "max_failure_rate",
            Gate::MinReports => "min_reports",
            Gate::MaxAccuracyDrop => "max_accuracy_drop",
        }
    }
}

/// What a gate says of a stage now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Passes.
    Ok,
    /// Fails: the rollout halts on it.
    Failed,
    /// Neither yet: no device sent the figure, or reports are still to come.
    Waiting,
}

/// One gate checked against a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateCheck {
    pub gate: Gate,
    /// The stage's figure the gate compares: basis points (accuracy, drop, failure rate),
    /// microseconds (p99), or devices (validated confirmations); `None` while no device sent one.
    pub figure: Option<u32>,
    /// What the figure must stay within; for `min_reports`, the confirmations needed, which is
    /// never more than the stage's devices.
    pub threshold: u32,
    pub verdict: Verdict,
    /// Why it failed, as the halt records it.
    pub evidence: Option<String>,
    /// Which failure halts first when several gates fail: the figure gates by the first device
    /// that fails them (in the stage's order), then the failure rate, then missing reports.
    #[serde(skip)]
    precedence: (u8, usize, u8),
}

/// A figure gate: the stage's extreme value and the first device beyond the threshold.
fn figure_gate(
    gate: Gate,
    rank: u8,
    threshold: u32,
    values: impl Iterator<Item = (usize, u32, String)>,
    worse: impl Fn(u32, u32) -> bool,
) -> GateCheck {
    let mut figure: Option<u32> = None;
    let mut first_fail: Option<(usize, String)> = None;
    for (i, v, evidence) in values {
        figure = Some(figure.map_or(v, |f| if worse(v, f) { v } else { f }));
        if first_fail.is_none() && worse(v, threshold) {
            first_fail = Some((i, evidence));
        }
    }
    let verdict = match (&first_fail, figure) {
        (Some(_), _) => Verdict::Failed,
        (None, Some(_)) => Verdict::Ok,
        (None, None) => Verdict::Waiting,
    };
    let index = first_fail.as_ref().map_or(usize::MAX, |(i, _)| *i);
    GateCheck {
        gate,
        figure,
        threshold,
        verdict,
        evidence: first_fail.map(|(_, e)| e),
        precedence: (0, index, rank),
    }
}

/// Every gate of `g` checked against the results of a stage's devices.
pub fn check(g: &Gates, results: &[(String, DeviceResult)]) -> Vec<GateCheck> {
    let min_accuracy = u32::from(g.min_accuracy_bp);
    let mut checks = vec![
        figure_gate(
            Gate::MinAccuracy,
            0,
            min_accuracy,
            results.iter().enumerate().filter_map(|(i, (d, r))| {
                let a = u32::from(r.accuracy_bp?);
                Some((i, a, format!("{d}: accuracy {a} bp < {min_accuracy} bp")))
            }),
            |v, than| v < than,
        ),
        figure_gate(
            Gate::MaxP99Latency,
            1,
            g.max_p99_latency_us,
            results.iter().enumerate().filter_map(|(i, (d, r))| {
                let p = r.p99_us?;
                let e = format!("{d}: p99 {p} us > {} us", g.max_p99_latency_us);
                Some((i, p, e))
            }),
            |v, than| v > than,
        ),
    ];

    let total = results.len().max(1);
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.progress == Progress::Failed)
        .map(|(d, _)| d.as_str())
        .collect();
    let over = failed.len() * 10_000 > total * usize::from(g.max_failure_rate_bp);
    checks.push(GateCheck {
        gate: Gate::MaxFailureRate,
        // Rounded up, so the figure exceeds the threshold exactly when the gate fails.
        figure: Some((failed.len() * 10_000).div_ceil(total) as u32),
        threshold: u32::from(g.max_failure_rate_bp),
        verdict: if over { Verdict::Failed } else { Verdict::Ok },
        evidence: over.then(|| {
            format!(
                "{} of {} devices failed or reverted ({})",
                failed.len(),
                results.len(),
                failed.join(", ")
            )
        }),
        precedence: (1, 0, 0),
    });

    let validated = results
        .iter()
        .filter(|(_, r)| r.progress == Progress::Confirmed && r.accuracy_bp.is_some())
        .count() as u32;
    let all_done = results.iter().all(|(_, r)| r.progress != Progress::Pending);
    let needed = g.min_reports.max(1).min(results.len() as u32);
    // Every device has finished, too few of them with a validated confirmation: the evidence
    // the stage needs can no longer come (failures within the allowed rate).
    let short = all_done && validated < needed;
    checks.push(GateCheck {
        gate: Gate::MinReports,
        figure: Some(validated),
        threshold: needed,
        verdict: if validated >= needed {
            Verdict::Ok
        } else if short {
            Verdict::Failed
        } else {
            Verdict::Waiting
        },
        evidence: short.then(|| {
            format!(
                "every device of the stage finished with {validated} validated confirmations, \
                 {needed} needed"
            )
        }),
        precedence: (2, 0, 0),
    });

    if let Some(max) = g.max_accuracy_drop_bp {
        checks.push(figure_gate(
            Gate::MaxAccuracyDrop,
            2,
            u32::from(max),
            results.iter().enumerate().filter_map(|(i, (d, r))| {
                let (old, a) = (r.replaced_accuracy_bp?, r.accuracy_bp?);
                let e = format!("{d}: accuracy {old} -> {a} bp, drop over {max} bp");
                Some((i, u32::from(old.saturating_sub(a)), e))
            }),
            |v, than| v > than,
        ));
    }
    checks
}

/// The failed gate the rollout halts on, with its evidence, if any fails.
pub fn halting(checks: &[GateCheck]) -> Option<(&'static str, String)> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Failed)
        .min_by_key(|c| c.precedence)
        .map(|c| (c.gate.name(), c.evidence.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(min_reports: u32) -> Gates {
        Gates {
            min_reports,
            max_failure_rate_bp: 3_333,
            min_accuracy_bp: 9_000,
            max_p99_latency_us: 10_000,
            max_accuracy_drop_bp: None,
        }
    }

    fn result(progress: Progress, accuracy: Option<u16>) -> DeviceResult {
        DeviceResult {
            progress,
            accuracy_bp: accuracy,
            p99_us: accuracy.map(|_| 5_000),
            replaced_accuracy_bp: None,
        }
    }

    fn verdict(checks: &[GateCheck], gate: Gate) -> (Option<u32>, u32, Verdict) {
        let c = checks.iter().find(|c| c.gate == gate).unwrap();
        (c.figure, c.threshold, c.verdict)
    }

    #[test]
    fn one_device_stage_needs_one_report_whatever_min_reports_says() {
        let r = vec![("n00".into(), result(Progress::Confirmed, Some(9_500)))];
        let checks = check(&gates(2), &r);
        assert_eq!(
            verdict(&checks, Gate::MinReports),
            (Some(1), 1, Verdict::Ok)
        );
        assert_eq!(halting(&checks), None);
    }

    #[test]
    fn figures_from_devices_that_then_failed_are_not_validated_reports() {
        // Both validated (figures sent), both then failed: no validated confirmation.
        let r = vec![
            ("n00".into(), result(Progress::Failed, Some(9_500))),
            ("n01".into(), result(Progress::Failed, Some(9_400))),
        ];
        let mut g = gates(1);
        g.max_failure_rate_bp = 10_000;
        let checks = check(&g, &r);
        assert_eq!(
            verdict(&checks, Gate::MinReports),
            (Some(0), 1, Verdict::Failed)
        );
        assert_eq!(
            halting(&checks).unwrap().0,
            "min_reports",
            "the stage halts on the gate shown failed"
        );
    }

    #[test]
    fn failure_rate_figure_exceeds_its_threshold_exactly_when_it_fails() {
        let r = vec![
            ("a".into(), result(Progress::Failed, None)),
            ("b".into(), result(Progress::Confirmed, Some(9_500))),
            ("c".into(), result(Progress::Confirmed, Some(9_500))),
        ];
        let checks = check(&gates(1), &r);
        assert_eq!(
            verdict(&checks, Gate::MaxFailureRate),
            (Some(3_334), 3_333, Verdict::Failed)
        );
    }

    #[test]
    fn no_figures_yet_is_waiting_and_pending_devices_keep_reports_waiting() {
        let r = vec![("a".into(), result(Progress::Pending, None))];
        let checks = check(&gates(1), &r);
        assert_eq!(
            verdict(&checks, Gate::MinAccuracy),
            (None, 9_000, Verdict::Waiting)
        );
        assert_eq!(
            verdict(&checks, Gate::MinReports),
            (Some(0), 1, Verdict::Waiting)
        );
        assert_eq!(halting(&checks), None);
    }

    #[test]
    fn the_first_device_to_fail_a_figure_gate_names_the_halt() {
        let slow = DeviceResult {
            p99_us: Some(20_000),
            ..result(Progress::Confirmed, Some(9_500))
        };
        let r = vec![
            ("a".into(), slow),
            ("b".into(), result(Progress::Confirmed, Some(5_000))),
        ];
        let checks = check(&gates(1), &r);
        assert_eq!(
            halting(&checks),
            Some(("max_p99_latency", "a: p99 20000 us > 10000 us".into()))
        );
        assert_eq!(
            verdict(&checks, Gate::MinAccuracy),
            (Some(5_000), 9_000, Verdict::Failed)
        );
    }
}
