//! The link to the gateway: the session's messages out as framed device frames (a `Hello`
//! before each check-in and after an unanswered request, so a gateway that restarted learns who
//! is on the link), and framed server frames in.

use agent::{Outgoing, Session};
use embedded_storage::nor_flash::NorFlash;
use protocol::link::{Deframer, MAX_ENCODED, MAX_PAYLOAD};
use protocol::{DeviceFrame, Hello, ServerFrame};

pub(crate) struct Uplink<'a> {
    hello: Hello<'a>,
    rx: Deframer<MAX_ENCODED>,
    /// A request went out and its answer has not come.
    expecting: bool,
    /// The last request was never answered (the link or the gateway may have restarted).
    unanswered: bool,
    /// Sent before the message in `msg`.
    hello_due: bool,
    /// The encoded message waiting for `transmit` (0: none).
    msg_len: usize,
    msg: [u8; MAX_PAYLOAD],
    wire: [u8; MAX_ENCODED],
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
            msg: [0; MAX_PAYLOAD],
            wire: [0; MAX_ENCODED],
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
