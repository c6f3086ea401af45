//! The active model as the application sees it: its bytes and its validation set, in place in
//! the flash slot the agent switched to.

use protocol::ModelSlot;

/// The running model, borrowed from mapped flash for one call.
#[derive(Debug, Clone, Copy)]
pub struct ActiveModel<'m> {
    pub slot: ModelSlot,
    /// The model file (TFLite flatbuffer).
    pub model: &'m [u8],
    /// Its validation set (the line's stand-in inputs on the emulated board).
    pub set: &'m [u8],
    /// Counts the switches since boot: tells one active model from the next.
    pub generation: u32,
}

impl<'m> ActiveModel<'m> {
    /// The model parsed (checked bound by bound; a bad file is an error).
    pub fn parse(&self) -> Result<model::Model<'m>, model::Error> {
        model::Model::parse(self.model)
    }
}

/// Where the CPU reads `len` bytes at `offset` of the flash, for `Board::map` on a board whose
/// flash is memory-mapped (`Layout::mapped_at`): only inside a model slot, `None` elsewhere or
/// where the flash is not mapped. The board turns it into a slice (its one `unsafe`).
pub fn model_slot_address(layout: &layout::Layout, offset: u32, len: u32) -> Option<usize> {
    let end = offset.checked_add(len)?;
    let inside = |r: layout::Region| offset >= r.offset && end <= r.end();
    if !(inside(layout.model_a) || inside(layout.model_b)) {
        return None;
    }
    Some(layout.mapped_at?.checked_add(offset)? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use layout::{MPS2_AN386, NRF52840, STM32L4R5};

    #[test]
    fn only_model_slots_of_mapped_flash_have_an_address() {
        let b = STM32L4R5.model_b;
        assert_eq!(
            model_slot_address(&STM32L4R5, b.offset, 16),
            Some(0x0800_0000 + b.offset as usize)
        );
        assert_eq!(model_slot_address(&STM32L4R5, b.end() - 16, 17), None);
        let a = NRF52840.model_a;
        assert_eq!(
            model_slot_address(&NRF52840, a.offset + 4, a.size - 4),
            Some(a.offset as usize + 4)
        );
        assert_eq!(model_slot_address(&NRF52840, NRF52840.kv.offset, 4), None);
        assert_eq!(model_slot_address(&NRF52840, u32::MAX, 2), None);
        // The emulated board's flash is a host file: not mapped.
        assert_eq!(
            model_slot_address(&MPS2_AN386, MPS2_AN386.model_a.offset, 4),
            None
        );
    }
}
