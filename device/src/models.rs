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
