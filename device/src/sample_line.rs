//! A stand-in for the application's inference: the active model on its own validation
//! samples, round and round, at a fixed period. What a board runs on the bench before its
//! sensors are wired, and the emulated line's work.

use crate::board::Inference;
use crate::models::ActiveModel;

/// Runs one inference every `period_ms`, counting those that ran.
#[derive(Debug)]
pub struct SampleLine<'a> {
    period_ms: u64,
    inferences: u64,
    next_ms: u64,
    sample: usize,
    arena: &'a mut [u8],
}

impl<'a> SampleLine<'a> {
    /// `arena`: the tensor arena the line's interpreter plans in (as large as the device's
    /// check arena, so that every model it switches to fits).
    pub fn new(period_ms: u64, arena: &'a mut [u8]) -> Self {
        SampleLine {
            period_ms,
            inferences: 0,
            next_ms: 0,
            sample: 0,
            arena,
        }
    }

    /// When the inference after one at `now_ms` is due: a period after the last one was due,
    /// or at once when the line has fallen more than a period behind.
    fn next_due(&self, now_ms: u64) -> u64 {
        self.next_ms.max(now_ms.saturating_sub(self.period_ms)) + self.period_ms
    }
}

impl Inference for SampleLine<'_> {
    fn next_ms(&self) -> u64 {
        self.next_ms
    }

    fn infer(&mut self, now_ms: u64, model: &ActiveModel<'_>) {
        self.next_ms = self.next_due(now_ms);
        let ran = (|| {
            let parsed = model.parse().ok()?;
            let set = model::ValidationSet::parse(model.set).ok()?;
            let (_, input) = set.sample(self.sample % set.count)?;
            let mut interp = model::Interpreter::new(&parsed, self.arena).ok()?;
            interp.set_input(input).ok()?;
            interp.invoke().ok()?;
            interp.argmax().ok()
        })();
        if ran.is_some() {
            self.inferences += 1;
            self.sample = self.sample.wrapping_add(1);
        }
    }

    fn model_changed(&mut self, _: Option<&ActiveModel<'_>>) {
        self.sample = 0;
    }

    fn inferences(&self) -> u64 {
        self.inferences
    }
}
