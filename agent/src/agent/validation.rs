//! The validation gate shared by model updates and firmware trials: a model's validation set
//! run through the interpreter, and what its verdict tells the server.

use protocol::{Figures, RevertReason};

/// A model's validation run: parse, plan, run every sample through the interpreter.
pub(super) fn run_validation(
    model_bytes: &[u8],
    set_bytes: &[u8],
    arena: &mut [u8],
    now_ns: impl FnMut() -> u64,
) -> Result<model::Report, model::Error> {
    let model = model::Model::parse(model_bytes)?;
    let set = model::ValidationSet::parse(set_bytes)?;
    let mut interp = model::Interpreter::new(&model, arena)?;
    model::validation::run(&mut interp, &set, now_ns)
}

pub(super) fn figures_of(r: &model::Report) -> Figures {
    Figures {
        samples: r.samples,
        accuracy_bp: r.accuracy_bp,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
    }
}

/// The first part of a policy a verdict fails.
pub(super) fn revert_reason(v: &model::Verdict) -> RevertReason {
    if !v.accuracy_ok {
        RevertReason::Accuracy
    } else if !v.latency_ok {
        RevertReason::Latency
    } else {
        RevertReason::AccuracyDrop
    }
}
