//! The link to the gateway: the session's messages out as framed device frames (a `Hello`
//! before each check-in and after an unanswered request, so a gateway that restarted learns who
//! is on the link), and framed server frames in.

use agent::{Outgoing, Session};
use embedded_storage::nor_flash::NorFlash;
use protocol::link::Deframer;
use protocol::{DeviceFrame, Hello, ServerFrame};

/// Bytes of the longest message a device sends (its check-in with every field at its bound;
/// reports, chunk requests and hellos are shorter). The protocol's own bound is for servers
/// and gateways, which carry chunks of up to `MAX_CHUNK`; a device's RAM holds what it sends.
pub(crate) const MAX_SEND: usize = 512;
/// Bytes of the longest message a device receives: an update command (its envelope, location
/// and stream offer) or a chunk of the size the agent asks for.
pub(crate) const MAX_RECEIVE: usize = max(artifact::MAX_ENVELOPE_LEN, agent::CHUNK as usize) + 256;
/// A frame's bytes on the wire for a payload of `n` (COBS, CRC, delimiter).
const fn encoded(n: usize) -> usize {
    n + n / 254 + 8
}
const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

pub(crate) struct Uplink<'a> {
    hello: Hello<'a>,
    rx: Deframer<{ encoded(MAX_RECEIVE) }>,
    /// A request went out and its answer has not come.
    expecting: bool,
    /// The last request was never answered (the link or the gateway may have restarted).
    unanswered: bool,
    /// Sent before the message in `msg`.
    hello_due: bool,
    /// The encoded message waiting for `transmit` (0: none).
    msg_len: usize,
    msg: [u8; MAX_SEND],
    wire: [u8; encoded(MAX_SEND)],
}

impl<'a> Uplink<'a> {
    pub(crate) fn new(device_id: &'a str, credential: &'a str) -> Self {
        Uplink {
            hello: Hello {
                device_id,
                credential,
            },
            rx: Deframer::new(),
            expecting: false,
            unanswered: true,
            hello_due: false,
            msg_len: 0,
            msg: [0; MAX_SEND],
            wire: [0; encoded(MAX_SEND)],
        }
    }

    /// A request went out and its answer has not come (nor its timeout).
    pub(crate) fn expecting(&self) -> bool {
        self.expecting
    }

    /// Takes the next message the session wants sent, once the last one is out.
    pub(crate) fn poll<F: NorFlash>(&mut self, session: &mut Session<'_, F>, now_ms: u64) {
        if self.msg_len > 0 || self.hello_due {
            return;
        }
        let (check_in, frame) = match session.poll_transmit(now_ms) {
            Some(Outgoing::CheckIn(c)) => (true, DeviceFrame::CheckIn(c)),
            Some(Outgoing::ChunkRequest(c)) => (false, DeviceFrame::ChunkRequest(c)),
            Some(Outgoing::Report(r)) => (false, DeviceFrame::Report(r)),
            None => return,
        };
        // A message that does not encode is dropped: the session sends again at its timeout.
        self.msg_len = frame.encode(&mut self.msg).unwrap_or(0);
        self.hello_due = check_in || self.unanswered || self.expecting;
        self.unanswered = self.expecting;
        self.expecting = true;
    }

    /// The next framed bytes to write to the transport, one frame at a time.
    pub(crate) fn transmit(&mut self) -> Option<&[u8]> {
        let n = if self.hello_due {
            self.hello_due = false;
            // An id of 64 and a credential of 128 bytes (`agent::provisioning`) fit.
            let mut hello = [0u8; 256];
            let n = DeviceFrame::Hello(self.hello).encode(&mut hello).ok()?;
            protocol::link::encode(&hello[..n], &mut self.wire)
        } else if self.msg_len > 0 {
            let len = core::mem::take(&mut self.msg_len);
            protocol::link::encode(&self.msg[..len], &mut self.wire)
        } else {
            None
        }?;
        Some(&self.wire[..n])
    }

    /// Hands the session every whole frame in `bytes`; a frame that does not decode is dropped.
    pub(crate) fn receive<F: NorFlash>(
        &mut self,
        bytes: &[u8],
        session: &mut Session<'_, F>,
        now_ms: u64,
    ) {
        for &byte in bytes {
            if let Some(Ok(payload)) = self.rx.push(byte)
                && let Ok(frame) = ServerFrame::decode(payload)
            {
                // A push (`CheckInNow`) answers no request: one in flight is still coming.
                if !matches!(frame, ServerFrame::CheckInNow) {
                    self.expecting = false;
                    self.unanswered = false;
                }
                // The agent reports its own errors to the server.
                let _ = session.handle(&frame, now_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::provisioning::{MAX_CREDENTIAL, MAX_DEVICE_ID};
    use artifact::Version;
    use protocol::{
        BootStatus, CheckIn, Counters, Figures, Firmware, ModelSlot, Progress, RunningModel,
    };

    #[test]
    fn the_longest_check_in_and_hello_fit_the_send_buffers() {
        let id = core::str::from_utf8(&[b'd'; MAX_DEVICE_ID]).unwrap();
        let name = core::str::from_utf8(&[b'n'; 32]).unwrap();
        let big = Version::new(u32::MAX, u32::MAX, u32::MAX);
        let check_in = CheckIn {
            device_id: id,
            board: "nucleo-l4r5zi",
            firmware: Firmware {
                version: big,
                status: BootStatus::Reverted,
            },
            model: Some(RunningModel {
                name,
                version: big,
                slot: ModelSlot::B,
            }),
            update: Some(Progress {
                release: u64::MAX,
                offset: u32::MAX,
                total: u32::MAX,
            }),
            validation: Some(Figures {
                samples: u32::MAX,
                accuracy_bp: u16::MAX,
                p50_us: u32::MAX,
                p99_us: u32::MAX,
            }),
            counters: Counters {
                boots: u32::MAX,
                inferences: u64::MAX,
                updates: u32::MAX,
                failures: u32::MAX,
                reverts: u32::MAX,
            },
            runtime_abi: Some(u32::MAX),
            wait_ms: Some(u32::MAX),
            streams: Some(u8::MAX),
        };
        let mut msg = [0u8; MAX_SEND];
        let n = DeviceFrame::CheckIn(check_in).encode(&mut msg).unwrap();
        assert!(n < MAX_SEND - 100, "{n} bytes leave room to spare");
        let mut wire = [0u8; encoded(MAX_SEND)];
        assert!(protocol::link::encode(&msg[..n], &mut wire).is_some());
        let credential = core::str::from_utf8(&[b'c'; MAX_CREDENTIAL]).unwrap();
        let mut hello = [0u8; 256];
        let hello_frame = DeviceFrame::Hello(Hello {
            device_id: id,
            credential,
        });
        assert!(hello_frame.encode(&mut hello).is_ok());
    }
}
