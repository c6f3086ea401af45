//! Fuzz target: every device-protocol decoder (messages and serial frames) on arbitrary bytes,
//! without an allocator, as on the device and the gateway. Run: `cargo xtask fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::link::{Deframer, MAX_ENCODED};
use protocol::{
    CheckIn, Chunk, ChunkRequest, Command, DeviceFrame, Hello, Report, ServerFrame, decode,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<CheckIn>(data);
    let _ = decode::<Command>(data);
    let _ = decode::<ChunkRequest>(data);
    let _ = decode::<Chunk>(data);
    let _ = decode::<Report>(data);
    let _ = DeviceFrame::decode(data);
    let _ = ServerFrame::decode(data);
    let _ = decode::<Hello>(data);
    // The serial link's byte framing, then whatever frames it yields.
    let mut link = Deframer::<MAX_ENCODED>::new();
    for &b in data {
        if let Some(Ok(frame)) = link.push(b) {
            let _ = DeviceFrame::decode(frame);
        }
    }
});
