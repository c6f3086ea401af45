//! Fuzz target: the model loader and interpreter on arbitrary bytes (and validation sets),
//! without an allocator on the path, as on the device. Run: `cargo xtask fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{Interpreter, Model, ValidationSet};

fuzz_target!(|data: &[u8]| {
    let _ = ValidationSet::parse(data);
    if let Ok(m) = Model::parse(data) {
        let mut arena = [0u8; 16 * 1024];
        if let Ok(mut interp) = Interpreter::new(&m, &mut arena) {
            let _ = interp.invoke();
        }
    }
});
