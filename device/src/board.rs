//! What the board gives the agent (`Board`) and what the application gives it (`Inference`).

use crate::models::ActiveModel;

/// The board's side: clock, watchdog, reset, memory-mapped flash, console. Shared borrows
/// only: a validation's clock reads the time and runs the line while the candidate is mapped.
pub trait Board {
    /// Milliseconds since boot.
    fn now_ms(&self) -> u64;
    /// The clock a validation measures latency with, in nanoseconds; read at the start and
    /// the end of every sample.
    fn now_ns(&self) -> u64;
    /// Restarts the watchdog's count (a trial boot is reverted if it stops).
    fn feed_watchdog(&self);
    /// Resets the board (to swap in a firmware, or to let the bootloader revert one).
    fn reset(&self) -> !;
    /// `len` bytes of the flash at `offset`, where the flash is mapped into memory (internal
    /// NOR, QSPI in memory-mapped mode); `None` when that range is not mapped. Called only for
    /// model slots, and the bytes are read only until the next call that writes the flash.
    fn map(&self, offset: u32, len: u32) -> Option<&[u8]>;
    /// One whole console line, `\n` included, written at once (a test harness reads it).
    fn console(&self, line: &[u8]);
}

/// The application's inference, paced by itself and run by the device.
pub trait Inference {
    /// When the next inference is due (milliseconds since boot); `u64::MAX` for none.
    fn next_ms(&self) -> u64;
    /// Runs the inference that is due, with the active model.
    fn infer(&mut self, now_ms: u64, model: &ActiveModel<'_>);
    /// The active model changed (after a switch; `None` when no model is active). The next
    /// `infer` gets the new one.
    fn model_changed(&mut self, model: Option<&ActiveModel<'_>>);
    /// Inferences made since boot (the server sees them in check-ins).
    fn inferences(&self) -> u64;
}
