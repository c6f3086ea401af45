//! The link to the gateway: the session's messages out as framed device frames (a `Hello`
//! before each check-in and after an unanswered request, so a gateway that restarted learns who
//! is on the link), and framed server frames in.

use agent::{Outgoing, Session};
use board_mps2::{SemihostingFlash, clock, uart};
use protocol::link::{Deframer, MAX_ENCODED, MAX_PAYLOAD};
use protocol::{DeviceFrame, Hello, ServerFrame};

/// How long the UART is polled after the last request or byte, in emulated milliseconds (QEMU
/// hands over the next byte as soon as the last one is read, so a frame arrives well within it).
const POLL_WINDOW_MS: u64 = 1;

pub struct Uplink {
    hello: Hello<'static>,
    /// When (SysTick ticks) a request last went out or a byte last came in.
    active_ticks: u64,
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
            active_ticks: 0,
            expecting: false,
            unanswered: true,
            msg: [0; MAX_PAYLOAD],
            wire: [0; MAX_ENCODED],
        }
    }

    /// Until when the main loop polls the UART instead of sleeping: a few milliseconds after a
    /// request went out or a byte came in. An answer usually starts within that; one that does
    /// not is picked up at the next SysTick (10 ms), so a board waiting on a slow server sleeps
    /// instead of spinning (40 spinning emulators starve the gateway and server they wait on).
    /// A request went out and its answer has not come (nor its timeout).
    pub fn expecting(&self) -> bool {
        self.expecting
    }

    pub fn poll_until_ticks(&self) -> u64 {
        self.active_ticks + POLL_WINDOW_MS * clock::TICKS_PER_MS
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
            self.active_ticks = clock::ticks();
        }
        // Polled as well as interrupt-driven: under QEMU 7.2 the RX interrupt status is never
        // raised (RXFULL is), so the receiver is polled while an answer is coming.
        // Once bytes come, the rest of the frame follows at once: it is read here, in a tight
        // loop, rather than one byte per turn of the main loop (whose every turn costs more
        // emulated I/O than the byte).
        loop {
            uart::drain();
            let mut got = false;
            while let Some(byte) = uart::read_byte() {
                got = true;
                if let Some(Ok(payload)) = self.rx.push(byte)
                    && let Ok(frame) = ServerFrame::decode(payload)
                {
                    self.active_ticks = clock::ticks();
                    self.expecting = false;
                    self.unanswered = false;
                    // The agent reports its own errors to the server.
                    let _ = session.handle(&frame, clock::now_ms());
                    return;
                }
            }
            if got {
                self.active_ticks = clock::ticks();
            } else if clock::ticks() >= self.poll_until_ticks() || !self.rx.in_frame() {
                return;
            }
        }
    }
}
