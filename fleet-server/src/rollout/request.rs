//! A rollout as an operator asks for it (JSON, in human units: "5%", seconds, fractions), and
//! its translation into the engine's `Spec`; which devices a selector takes.

use super::decide::{Gates, Spec, Stage};
use super::error::Error;
use crate::store::Device;
use serde::{Deserialize, Serialize};

/// Which devices a rollout takes: all of these tags, and the board if given (always one of
/// the release's boards).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub board: Option<String>,
}

impl Selector {
    pub fn matches(&self, d: &Device, boards: &[&str]) -> bool {
        let tags: Vec<&str> = d.tags.split(',').filter(|t| !t.is_empty()).collect();
        boards.contains(&d.board.as_str())
            && self.board.as_ref().is_none_or(|b| *b == d.board)
            && self.tags.iter().all(|t| tags.contains(&t.as_str()))
    }
}

fn default_latency_ms() -> f64 {
    10.0
}

/// A rollout as an operator asks for it (JSON), in human units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    pub artifact_id: i64,
    #[serde(default)]
    pub selector: Selector,
    /// Cumulative stage sizes: `"5%"` of the selected devices, or a count `"10"`.
    pub stages: Vec<String>,
    #[serde(default)]
    pub soak_seconds: f64,
    #[serde(default)]
    pub min_reports: Option<u32>,
    /// Share of a stage's devices that may fail, 0..=1.
    #[serde(default)]
    pub max_failure_rate: f64,
    /// 0..=1.
    #[serde(default)]
    pub min_accuracy: f64,
    #[serde(default = "default_latency_ms")]
    pub max_latency_ms: f64,
    /// 0..=1.
    #[serde(default)]
    pub max_accuracy_drop: Option<f64>,
}

fn invalid(msg: String) -> Error {
    Error::invalid("invalid_rollout", msg)
}

/// Parses `"5%"` or `"10"`.
pub fn parse_stage(s: &str) -> Result<Stage, Error> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        match p.trim().parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Stage::Percent(p)),
            _ => Err(invalid(format!("stage {s:?}: a percentage is 1%..100%"))),
        }
    } else {
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Stage::Count(n)),
            _ => Err(invalid(format!("stage {s:?}: give N% or a device count"))),
        }
    }
}

fn fraction_bp(name: &str, f: f64) -> Result<u16, Error> {
    if (0.0..=1.0).contains(&f) {
        Ok((f * 10_000.0).round() as u16)
    } else {
        Err(invalid(format!("{name} {f}: a fraction between 0 and 1")))
    }
}

impl NewRollout {
    pub fn spec(&self) -> Result<Spec, Error> {
        if self.stages.is_empty() {
            return Err(invalid("at least one stage".into()));
        }
        if !(self.soak_seconds >= 0.0 && self.soak_seconds < 1e9) {
            return Err(invalid(format!("soak {}", self.soak_seconds)));
        }
        if !(self.max_latency_ms > 0.0 && self.max_latency_ms < 1e6) {
            return Err(invalid(format!("max latency {} ms", self.max_latency_ms)));
        }
        Ok(Spec {
            stages: self
                .stages
                .iter()
                .map(|s| parse_stage(s))
                .collect::<Result<_, _>>()?,
            soak_ms: (self.soak_seconds * 1000.0) as u64,
            gates: Gates {
                min_reports: self.min_reports.unwrap_or(1).max(1),
                max_failure_rate_bp: fraction_bp("max failure rate", self.max_failure_rate)?,
                min_accuracy_bp: fraction_bp("min accuracy", self.min_accuracy)?,
                max_p99_latency_us: (self.max_latency_ms * 1000.0) as u32,
                max_accuracy_drop_bp: self
                    .max_accuracy_drop
                    .map(|d| fraction_bp("max accuracy drop", d))
                    .transpose()?,
            },
        })
    }
}
