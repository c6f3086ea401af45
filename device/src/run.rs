//! The device as one async task of an embassy application: `poll`, write what is to send,
//! then wait for bytes from the transport or the next wake, whichever comes first.

use crate::board::{Board, Inference};
use crate::device::Device;
use embassy_futures::select::{Either, select};
use embassy_time::{Instant, Timer};
use embedded_io_async::{Read, Write};
use embedded_storage::nor_flash::NorFlash;

/// How long a failed transport is left alone before it is read again.
const LINK_RETRY_MS: u64 = 100;

/// Runs the device for ever. The board's `now_ms` must be embassy-time's clock
/// (`Instant::now().as_millis()`): wakes are scheduled on it. The transport's `read` must be
/// cancel-safe (embassy's UART drivers are): a wake cancels a read that has no bytes yet.
/// The device is borrowed, not moved in: a task's static state then holds it once (an async
/// function's moved-in argument can be laid out twice).
pub async fn run<F, B, I, T>(device: &mut Device<'_, F, B>, app: &mut I, transport: &mut T) -> !
where
    F: NorFlash,
    B: Board,
    I: Inference,
    T: Read + Write,
{
    let mut buf = [0u8; 64];
    loop {
        let wake = device.poll(app);
        while let Some(bytes) = device.transmit() {
            // A frame lost on a failing link is asked for again at the session's timeout.
            if transport.write_all(bytes).await.is_err() {
                break;
            }
        }
        if wake <= device.board().now_ms() {
            continue;
        }
        match select(
            transport.read(&mut buf),
            Timer::at(Instant::from_millis(wake)),
        )
        .await
        {
            Either::First(Ok(n)) => device.receive(&buf[..n]),
            // The link is down (a UART framing error, a radio out of range): keep trying.
            Either::First(Err(_)) => Timer::after_millis(LINK_RETRY_MS).await,
            Either::Second(()) => {}
        }
    }
}
