//! The link to the gateway: the session's messages out as framed device frames (a `Hello`
//! before each check-in and after an unanswered request, so a gateway that restarted learns who
//! is on the link), and framed server frames in.

use agent::{Outgoing, Session};
use board_mps2::{SemihostingFlash, clock, uart};
use protocol::link::{Deframer, MAX_ENCODED, MAX_PAYLOAD};
use protocol::{DeviceFrame, Hello, ServerFrame};

pub struct Uplink {
    hello: Hello<'static>,
    rx: Deframer<MAX_ENCODED>,
    /// A request went out and its answer has not come.
    expecting: bool,
    /// The last request was never answered (the link or the gateway may have restarted).
    unanswered: bool,
    msg: [u8; MAX_PAYLOAD],
    wire: [u8; MAX_ENCODED],
}

impl Uplink {
    pub fn new(device_id: &'static str, credential: &'static str) -> Self {
        Uplink {
            hello: Hello {
                device_id,
                credential,
            },
            rx: Deframer::new(),
            expecting: false,
            unanswered: true,
            msg: [0; MAX_PAYLOAD],
            wire: [0; MAX_ENCODED],
        }
    }

    /// A request went out and its answer has not come (nor its timeout).
    pub fn expecting(&self) -> bool {
        self.expecting
    }

    fn send(&mut self, frame: &DeviceFrame<'_>) {
        let Ok(n) = frame.encode(&mut self.msg) else {
            return;
        };
        if let Some(m) = protocol::link::encode(&self.msg[..n], &mut self.wire) {
            uart::write_all(&self.wire[..m]);
        }
    }

    /// Sends what the session wants sent, and hands it what arrived.
    pub fn poll(&mut self, session: &mut Session<'_, SemihostingFlash>, now_ms: u64) {
        let frame = match session.poll_transmit(now_ms) {
            Some(Outgoing::CheckIn(c)) => Some((true, DeviceFrame::CheckIn(c))),
            Some(Outgoing::ChunkRequest(c)) => Some((false, DeviceFrame::ChunkRequest(c))),
            Some(Outgoing::Report(r)) => Some((false, DeviceFrame::Report(r))),
            None => None,
        };
        if let Some((check_in, frame)) = frame {
            let mut bytes = [0u8; MAX_PAYLOAD];
            let n = frame.encode(&mut bytes).unwrap_or(0);
            if check_in || self.unanswered || self.expecting {
                self.send(&DeviceFrame::Hello(self.hello));
            }
            if n > 0
                && let Some(m) = protocol::link::encode(&bytes[..n], &mut self.wire)
            {
                uart::write_all(&self.wire[..m]);
            }
            self.unanswered = self.expecting;
            self.expecting = true;
        }
        // Polled: QEMU 7.2's UART never raises its RX interrupt status (RXFULL it does), so the
        // core sleeps between looks, woken by TIMER0 while an answer is coming. It does not spin
        // for the next byte: a spinning core takes the host time its emulator needs to hand
        // the byte over, and a line of 40 boards got 100 bytes per second each that way.
        uart::drain();
        while let Some(byte) = uart::read_byte() {
            if let Some(Ok(payload)) = self.rx.push(byte)
                && let Ok(frame) = ServerFrame::decode(payload)
            {
                // A push (`CheckInNow`) answers no request: one in flight is still coming,
                // and the fast polling for it stays on.
                if !matches!(frame, ServerFrame::CheckInNow) {
                    self.expecting = false;
                    self.unanswered = false;
                }
                // The agent reports its own errors to the server.
                let _ = session.handle(&frame, clock::now_ms());
                return;
            }
        }
    }
}
