//! The rollout engine's decisions, free of I/O: which devices each stage takes (canaries first,
//! spread across tags), and whether a stage advances, waits, completes or halts, from the
//! devices' own validation reports (each gate checked in `gates`). The server stores the state
//! and applies the decisions.

use std::collections::BTreeMap;

/// How big a stage is: a share of the selected devices, or a count (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Percent of the selected devices, 1..=100.
    Percent(u8),
    Count(u32),
}

/// What a stage must show before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gates {
    /// Validated reports needed from the stage (at least one).
    pub min_reports: u32,
    /// Largest share of the stage's devices that may fail or revert, basis points.
    pub max_failure_rate_bp: u16,
    /// Lowest validation accuracy any device may show, basis points.
    pub min_accuracy_bp: u16,
    /// Highest p99 latency any device may show, microseconds (10 000 by default).
    pub max_p99_latency_us: u32,
    /// Largest accuracy drop against the version a device replaces, basis points.
    pub max_accuracy_drop_bp: Option<u16>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min_reports: 1,
            max_failure_rate_bp: 0,
            min_accuracy_bp: 0,
            max_p99_latency_us: 10_000,
            max_accuracy_drop_bp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    pub stages: Vec<Stage>,
    /// How long a stage runs after its last device confirmed before the next one starts.
    pub soak_ms: u64,
    pub gates: Gates,
}

/// A device the rollout's selector matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub tags: Vec<String>,
}

/// Where a device of the current stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Offered, not finished.
    Pending,
    /// Validated and confirmed.
    Confirmed,
    /// Refused, failed, or went back (on its own validation set, or the bootloader reverted).
    Failed,
}

/// A device of the current stage: where it stands, its own validation figures (also when it
/// rejected the release itself), and the accuracy of the version it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceResult {
    pub progress: Progress,
    pub accuracy_bp: Option<u16>,
    pub p99_us: Option<u32>,
    pub replaced_accuracy_bp: Option<u16>,
}

impl DeviceResult {
    pub const PENDING: DeviceResult = DeviceResult {
        progress: Progress::Pending,
        accuracy_bp: None,
        p99_us: None,
        replaced_accuracy_bp: None,
    };
}

/// Counts and extremes of a stage's devices (shown beside the gate checks, which the engine
/// computes in `gates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StageFigures {
    pub devices: u32,
    pub pending: u32,
    pub confirmed: u32,
    pub failed: u32,
    /// Devices that sent validation figures, failed ones included (not the `min_reports`
    /// figure: that counts validated confirmations).
    pub validated: u32,
    pub min_accuracy_bp: Option<u16>,
    pub max_p99_us: Option<u32>,
    pub max_accuracy_drop_bp: Option<u16>,
}

pub fn figures(results: &[(String, DeviceResult)]) -> StageFigures {
    let mut f = StageFigures {
        devices: results.len() as u32,
        ..StageFigures::default()
    };
    for (_, r) in results {
        match r.progress {
            Progress::Pending => f.pending += 1,
            Progress::Confirmed => f.confirmed += 1,
            Progress::Failed => f.failed += 1,
        }
        if let Some(a) = r.accuracy_bp {
            f.validated += 1;
            f.min_accuracy_bp = Some(f.min_accuracy_bp.map_or(a, |m| m.min(a)));
            if let Some(old) = r.replaced_accuracy_bp {
                let drop = old.saturating_sub(a);
                f.max_accuracy_drop_bp = Some(f.max_accuracy_drop_bp.map_or(drop, |m| m.max(drop)));
            }
        }
        if let Some(p) = r.p99_us {
            f.max_p99_us = Some(f.max_p99_us.map_or(p, |m| m.max(p)));
        }
    }
    f
}

/// What the engine does next with a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Wait,
    /// Start the next stage with these additional devices.
    Advance {
        stage: usize,
        devices: Vec<String>,
    },
    Complete,
    /// A gate failed: stop, offer the release to no one else, send the devices back.
    Halt {
        gate: &'static str,
        evidence: String,
    },
}

/// Devices per stage, each stage only the devices it adds. Order: round-robin over tag groups,
/// so that the canaries cover every tag; within a group, by id (stable across restarts).
pub fn plan(stages: &[Stage], devices: &[Candidate]) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for d in devices {
        let key = d.tags.iter().map(String::as_str).min().unwrap_or("");
        groups.entry(key).or_default().push(d);
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let mut order = Vec::with_capacity(devices.len());
    let mut round = 0;
    while order.len() < devices.len() {
        for g in groups.values() {
            if let Some(d) = g.get(round) {
                order.push(d.id.clone());
            }
        }
        round += 1;
    }
    let n = order.len();
    let mut out = Vec::new();
    let mut taken = 0usize;
    for s in stages {
        let target = match *s {
            // At least one device per stage, rounding up: 5 % of 40 is 2.
            Stage::Percent(p) => (n * usize::from(p.min(100))).div_ceil(100).max(1),
            Stage::Count(c) => c as usize,
        }
        .min(n);
        let end = target.max(taken);
        out.push(order[taken..end].to_vec());
        taken = end;
    }
    out
}

/// Judges the current stage from its devices' results.
pub fn evaluate(
    spec: &Spec,
    stage: usize,
    results: &[(String, DeviceResult)],
    confirmed_at_ms: Option<u64>,
    now_ms: u64,
    next: Option<Vec<String>>,
) -> Decision {
    let checks = super::gates::check(&spec.gates, results);
    if let Some((gate, evidence)) = super::gates::halting(&checks) {
        return Decision::Halt { gate, evidence };
    }
    let all_done = results.iter().all(|(_, r)| r.progress != Progress::Pending);
    let enough_reports = checks.iter().any(|c| {
        c.gate == super::gates::Gate::MinReports && c.verdict == super::gates::Verdict::Ok
    });
    let soaked = confirmed_at_ms.is_some_and(|t| now_ms >= t + spec.soak_ms);
    if !all_done || !enough_reports || !soaked {
        return Decision::Wait;
    }
    match next {
        Some(devices) if stage + 1 < spec.stages.len() => Decision::Advance {
            stage: stage + 1,
            devices,
        },
        _ => Decision::Complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: format!("n{i:02}"),
                tags: vec![format!("line-{}", i % 4)],
            })
            .collect()
    }

    fn spec() -> Spec {
        Spec {
            stages: vec![Stage::Percent(5), Stage::Percent(25), Stage::Percent(100)],
            soak_ms: 60_000,
            gates: Gates {
                min_reports: 2,
                max_failure_rate_bp: 0,
                min_accuracy_bp: 9_000,
                max_p99_latency_us: 10_000,
                max_accuracy_drop_bp: Some(200),
            },
        }
    }

    fn ok(acc: u16) -> DeviceResult {
        DeviceResult {
            progress: Progress::Confirmed,
            accuracy_bp: Some(acc),
            p99_us: Some(5_651),
            replaced_accuracy_bp: Some(9_277),
        }
    }

    const FAILED: DeviceResult = DeviceResult {
        progress: Progress::Failed,
        ..DeviceResult::PENDING
    };

    #[test]
    fn a_stage_that_can_no_longer_show_enough_reports_halts() {
        let mut lenient = spec();
        lenient.gates.max_failure_rate_bp = 10_000;
        let results = vec![("n00".to_owned(), FAILED), ("n01".to_owned(), FAILED)];
        assert_eq!(
            evaluate(&lenient, 0, &results, None, 0, Some(vec![])),
            Decision::Halt {
                gate: "min_reports",
                evidence: "every device of the stage finished with 0 validated confirmations, \
                           2 needed"
                    .into()
            }
        );
        // One still pending: its report may yet come.
        let results = vec![
            ("n00".to_owned(), FAILED),
            ("n01".to_owned(), DeviceResult::PENDING),
        ];
        assert_eq!(
            evaluate(&lenient, 0, &results, None, 0, Some(vec![])),
            Decision::Wait
        );
    }

    #[test]
    fn stages_cover_the_fleet_once_with_canaries_across_tags() {
        let stages = plan(&spec().stages, &fleet(40));
        assert_eq!(stages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 8, 30]);
        assert_eq!(
            stages[0],
            ["n00", "n01"],
            "two canaries, on two different lines"
        );
        let mut all: Vec<String> = stages.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40);
        let tag_of: BTreeMap<String, String> = fleet(40)
            .into_iter()
            .map(|c| (c.id, c.tags[0].clone()))
            .collect();
        let lines: std::collections::BTreeSet<&String> = stages
            .concat()
            .iter()
            .take(4)
            .map(|id| &tag_of[id])
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(lines.len(), 4, "the first four devices are on four lines");
        assert_eq!(
            plan(&[Stage::Count(3), Stage::Percent(100)], &fleet(2)),
            vec![vec!["n00".to_string(), "n01".to_string()], vec![]]
        );
    }

    #[test]
    fn a_stage_waits_for_every_device_and_its_soak_then_advances() {
        let s = spec();
        let r = vec![
            ("n00".to_string(), ok(9_277)),
            ("n01".to_string(), DeviceResult::PENDING),
        ];
        assert_eq!(evaluate(&s, 0, &r, None, 0, Some(vec![])), Decision::Wait);
        let r = vec![
            ("n00".to_string(), ok(9_277)),
            ("n01".to_string(), ok(9_300)),
        ];
        assert_eq!(
            evaluate(&s, 0, &r, Some(1_000), 30_000, Some(vec!["n02".into()])),
            Decision::Wait,
            "still soaking"
        );
        assert_eq!(
            evaluate(&s, 0, &r, Some(1_000), 61_000, Some(vec!["n02".into()])),
            Decision::Advance {
                stage: 1,
                devices: vec!["n02".into()]
            }
        );
        assert_eq!(
            evaluate(&s, 2, &r, Some(1_000), 61_000, None),
            Decision::Complete
        );
    }

    #[test]
    fn each_gate_halts_with_its_evidence() {
        let s = spec();
        let halt = |r: Vec<(String, DeviceResult)>| match evaluate(
            &s,
            0,
            &r,
            Some(0),
            u64::MAX / 2,
            Some(vec![]),
        ) {
            Decision::Halt { gate, evidence } => (gate, evidence),
            other => panic!("{other:?}"),
        };
        let (gate, ev) = halt(vec![("n00".into(), FAILED), ("n01".into(), ok(9_277))]);
        assert_eq!(gate, "max_failure_rate");
        assert_eq!(ev, "1 of 2 devices failed or reverted (n00)");
        assert_eq!(halt(vec![("n00".into(), ok(5_972))]).0, "min_accuracy");
        let slow = DeviceResult {
            accuracy_bp: Some(9_888),
            p99_us: Some(51_114),
            replaced_accuracy_bp: None,
            ..ok(0)
        };
        assert_eq!(
            halt(vec![("n00".into(), slow)]),
            ("max_p99_latency", "n00: p99 51114 us > 10000 us".into())
        );
        assert_eq!(halt(vec![("n00".into(), ok(9_050))]).0, "max_accuracy_drop");
        // A device that rejected the release itself names the gate its figures fail.
        let rejected = DeviceResult {
            progress: Progress::Failed,
            ..ok(5_972)
        };
        assert_eq!(
            halt(vec![
                ("n00".into(), rejected),
                ("n01".into(), DeviceResult::PENDING)
            ]),
            ("min_accuracy", "n00: accuracy 5972 bp < 9000 bp".into())
        );
    }

    #[test]
    fn stage_figures_are_what_the_gates_compare() {
        let slow = DeviceResult {
            p99_us: Some(12_000),
            ..ok(9_100)
        };
        let f = figures(&[
            ("a".into(), ok(9_277)),
            ("b".into(), slow),
            ("c".into(), FAILED),
            ("d".into(), DeviceResult::PENDING),
        ]);
        assert_eq!(
            f,
            StageFigures {
                devices: 4,
                pending: 1,
                confirmed: 2,
                failed: 1,
                validated: 2,
                min_accuracy_bp: Some(9_100),
                max_p99_us: Some(12_000),
                max_accuracy_drop_bp: Some(177),
            }
        );
    }
}
