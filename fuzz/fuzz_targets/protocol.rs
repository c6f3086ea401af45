//! Fuzz target: every device-protocol decoder (messages and serial frames) on arbitrary bytes,
//! without an allocator, as on the device and the gateway. Run: `cargo xtask fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{CheckIn, Chunk, ChunkRequest, Command, DeviceFrame, Report, ServerFrame, decode};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<CheckIn>(data);
    let _ = decode::<Command>(data);
    let _ = decode::<ChunkRequest>(data);
    let _ = decode::<Chunk>(data);
    let _ = decode::<Report>(data);
    let _ = DeviceFrame::decode(data);
    let _ = ServerFrame::decode(data);
});
