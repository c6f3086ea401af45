//! One device link (a TCP connection from QEMU's UART bridge, or a serial port): frames in,
//! frames out, one at a time. The link opens with the device's Hello; every later frame is
//! turned into a call on the server, the cache or the spool, and answered with the frame the
//! device expects, or with nothing when there is no answer to give (the device asks again
//! after its own timeout).
//!
//! Push: while a board idles (its last check-in was answered idle), the link keeps a long-poll
//! check-in open at the server on its behalf (its last check-in with `wait_ms`, protocol 1.2).
//! When that comes back with a command the board is sent `CheckInNow`, and its own check-in
//! fetches the command: commands reach a board only as answers to its check-ins, so none is
//! applied twice. Any frame from the board ends the long-poll; the next idle answer opens one.

use crate::cache::{Key, Miss};
use crate::spool::{Flush, Stored};
use crate::upstream::{Answer, Upstream};
use crate::{Shared, log};
use protocol::link::{Deframer, MAX_ENCODED};
use protocol::{Chunk, ChunkRequest, Command, DeviceFrame, ServerFrame};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Who is at the other end, from its Hello.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    credential: String,
}

/// What a frame leaves the link to do next.
enum Flow {
    Continue,
    /// Close the link (no Hello first, or a credential the server does not know).
    Close(&'static str),
}

/// Serves one link until the device goes away, an I/O error, or a reason to close it.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: &str,
    shared: &Shared,
) {
    shared.stats.add(|s| s.links += 1);
    log::info("link_opened", &[("peer", peer.into())]);
    let why = match run(&mut stream, shared).await {
        Ok(why) => why.to_owned(),
        Err(e) => e.to_string(),
    };
    log::info("link_closed", &[("peer", peer.into()), ("why", why)]);
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    shared: &Shared,
) -> std::io::Result<&'static str> {
    // Boxed: a frame buffer is a few KiB and would otherwise sit in every link's future.
    let mut deframer = Box::new(Deframer::<MAX_ENCODED>::new());
    let mut device: Option<Device> = None;
    let mut buf = vec![0u8; 1024];
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    let mut long_poll: Option<LongPoll> = None;
    loop {
        let n = tokio::select! {
            n = stream.read(&mut buf) => n?,
            Some(()) = wake.recv() => {
                drop(long_poll.take());
                shared.stats.add(|s| s.pushes += 1);
                if let Some(frame) = encode(&ServerFrame::CheckInNow, 8) {
                    send(stream, &frame).await?;
                }
                continue;
            }
        };
        if n == 0 {
            return Ok("end of stream");
        }
        for &byte in &buf[..n] {
            let frame = match deframer.push(byte) {
                None => continue,
                Some(Ok(frame)) => frame.to_vec(),
                Some(Err(e)) => {
                    // Noise, a cut frame or a bad CRC: drop it; the device sends again.
                    log::info("frame_dropped", &[("why", e.to_string())]);
                    continue;
                }
            };
            // The board speaks: what it says now is newer than the long-poll's check-in, and a
            // wake still queued from it is stale.
            drop(long_poll.take());
            while wake.try_recv().is_ok() {}
            let mut idle = None;
            let (flow, answer) = handle(&frame, &mut device, shared, &mut idle).await;
            if let Some(answer) = answer {
                send(stream, &answer).await?;
            }
            if let (Some(body), Some(dev)) = (idle, &device) {
                long_poll = Some(LongPoll::start(
                    shared.upstream.clone(),
                    dev.clone(),
                    body,
                    shared.long_poll,
                    wake_tx.clone(),
                ));
            }
            if let Flow::Close(why) = flow {
                return Ok(why);
            }
        }
    }
}

/// The long-poll check-in open on an idle board's behalf; aborted when dropped.
struct LongPoll(tokio::task::JoinHandle<()>);

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LongPoll {
    /// Waits at the server with `body` (the board's check-in, with the wait in it) until an
    /// answer other than idle comes, then says so on `wake`. An idle answer opens the next wait.
    fn start(
        upstream: Arc<Upstream>,
        dev: Device,
        body: Vec<u8>,
        wait: Duration,
        wake: mpsc::Sender<()>,
    ) -> LongPoll {
        LongPoll(tokio::spawn(async move {
            loop {
                let sent = Instant::now();
                match upstream
                    .check_in_waiting(&dev.credential, body.clone(), wait)
                    .await
                {
                    Answer::Ok(answer) => match ServerFrame::decode(&answer) {
                        Ok(ServerFrame::Command(Command::Idle { .. })) => {
                            // Idle at once: a server before 1.2 (or one polling every instant)
                            // does not hold check-ins; the board's own polls will do.
                            if sent.elapsed() < Duration::from_millis(500) {
                                log::info("long_poll_unsupported", &[("device", dev.id.clone())]);
                                return;
                            }
                        }
                        Ok(ServerFrame::Command(_)) => {
                            let _ = wake.send(()).await;
                            return;
                        }
                        _ => return,
                    },
                    // The server is away: try again later (the board polls meanwhile).
                    Answer::Unavailable(_) => tokio::time::sleep(Duration::from_secs(5)).await,
                    // Refused: the board's own check-in will hear why.
                    _ => return,
                }
            }
        }))
    }
}

/// Writes one server frame (its bytes as the server or the gateway encoded them).
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, frame: &[u8]) -> std::io::Result<()> {
    let mut out = vec![0u8; MAX_ENCODED];
    match protocol::link::encode(frame, &mut out) {
        Some(n) => {
            stream.write_all(&out[..n]).await?;
            stream.flush().await
        }
        None => {
            log::warn("frame_too_large", &[("bytes", frame.len().to_string())]);
            Ok(())
        }
    }
}

fn encode(frame: &ServerFrame<'_>, room: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; room];
    let n = frame.encode(&mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// Handles one frame; returns what to do next and the frame to answer with, if any.
/// A check-in answered idle leaves in `idle` the body of the long-poll to open for it.
async fn handle(
    bytes: &[u8],
    device: &mut Option<Device>,
    shared: &Shared,
    idle: &mut Option<Vec<u8>>,
) -> (Flow, Option<Vec<u8>>) {
    let frame = match DeviceFrame::decode(bytes) {
        Ok(f) => f,
        Err(e) => {
            log::info("frame_dropped", &[("why", e.to_string())]);
            return (Flow::Continue, None);
        }
    };
    if let DeviceFrame::Hello(hello) = frame {
        // Also later on the same link: a board that resets says Hello again on a stream that
        // outlives it (QEMU's socket, a serial port).
        if matches!(hello.device_id, "." | "..") {
            // Legal as an id, but it names the spool's own directories.
            return (Flow::Close("device id unusable as a directory name"), None);
        }
        log::info("hello", &[("device", hello.device_id.into())]);
        *device = Some(Device {
            id: hello.device_id.to_owned(),
            credential: hello.credential.to_owned(),
        });
        return (Flow::Continue, None);
    }
    let Some(dev) = device.as_ref() else {
        return (Flow::Close("frame before Hello"), None);
    };
    let claimed = match &frame {
        DeviceFrame::CheckIn(c) => Some(c.device_id),
        DeviceFrame::Report(r) => Some(r.device_id),
        DeviceFrame::ChunkRequest(_) | DeviceFrame::Hello(_) => None,
    };
    if let Some(claimed) = claimed.filter(|c| *c != dev.id) {
        log::warn(
            "frame_dropped",
            &[
                ("why", "device id differs from the Hello".into()),
                ("hello", dev.id.clone()),
                ("frame", claimed.into()),
            ],
        );
        return (Flow::Continue, None);
    }
    match frame {
        DeviceFrame::CheckIn(c) => {
            let (flow, answer) = check_in(dev, protocol::to_vec(&c), shared).await;
            let idled = answer.as_deref().is_some_and(|a| {
                matches!(
                    ServerFrame::decode(a),
                    Ok(ServerFrame::Command(Command::Idle { .. }))
                )
            });
            let wait_ms = u32::try_from(shared.long_poll.as_millis()).unwrap_or(u32::MAX);
            if idled && wait_ms > 0 {
                *idle = Some(protocol::to_vec(&protocol::CheckIn {
                    wait_ms: Some(wait_ms),
                    ..c
                }));
            }
            (flow, answer)
        }
        DeviceFrame::ChunkRequest(r) => chunk(dev, r, shared).await,
        DeviceFrame::Report(r) => report(dev, r.seq, protocol::to_vec(&r), shared).await,
        DeviceFrame::Hello(_) => (Flow::Continue, None),
    }
}

async fn check_in(dev: &Device, body: Vec<u8>, shared: &Shared) -> (Flow, Option<Vec<u8>>) {
    // The server learns a device's outcomes before its new state: a check-in waits for the
    // reports spooled before it.
    match shared.spool.deliver(&dev.id, Some(&dev.credential)).await {
        Flush::Empty => {}
        Flush::Unavailable => return (Flow::Continue, None),
        Flush::Unauthorized => return (Flow::Close("credential refused by the server"), None),
    }
    match shared.upstream.post("checkin", &dev.credential, body).await {
        Answer::Ok(answer) => {
            shared.stats.add(|s| s.checkins_forwarded += 1);
            match ServerFrame::decode(&answer) {
                Ok(ServerFrame::Command(Command::Update { release, .. })) => {
                    shared.cache.assign(&dev.id, &dev.credential, release);
                }
                _ => shared.cache.unassign(&dev.id),
            }
            (Flow::Continue, Some(answer))
        }
        Answer::Unauthorized => (Flow::Close("credential refused by the server"), None),
        other => {
            log::warn(
                "checkin_unanswered",
                &[("device", dev.id.clone()), ("answer", format!("{other:?}"))],
            );
            (Flow::Continue, None)
        }
    }
}

async fn chunk(dev: &Device, r: ChunkRequest, shared: &Shared) -> (Flow, Option<Vec<u8>>) {
    // Plain payloads and streams alike, for the release assigned to the device.
    if shared
        .cache
        .is_assigned(&dev.id, &dev.credential, r.release)
    {
        let key = Key {
            release: r.release,
            stream: r.stream,
        };
        match shared
            .cache
            .payload(key, &dev.credential, &shared.upstream, &shared.stats)
            .await
        {
            Ok(payload) if r.offset as usize <= payload.len() => {
                let start = r.offset as usize;
                let end = start.saturating_add(r.len as usize).min(payload.len());
                let data = payload.get(start..end).unwrap_or_default();
                let frame = ServerFrame::Chunk(Chunk {
                    release: r.release,
                    offset: r.offset,
                    data,
                    stream: r.stream,
                });
                let answer = encode(&frame, data.len() + 64);
                shared.stats.add(|s| {
                    s.chunks_from_cache += 1;
                    s.device_bytes += data.len() as u64;
                });
                return (Flow::Continue, answer);
            }
            // Past the end: the server answers that itself.
            Ok(_) | Err(Miss::Forward) => {}
            Err(Miss::Unauthorized) => {
                return (Flow::Close("credential refused by the server"), None);
            }
            Err(Miss::Unavailable(why)) => {
                log::warn(
                    "chunk_unanswered",
                    &[("device", dev.id.clone()), ("why", why)],
                );
                return (Flow::Continue, None);
            }
        }
    }
    // Not known to be this device's release: the server decides, and nothing is cached.
    match shared
        .upstream
        .post("chunk", &dev.credential, protocol::to_vec(&r))
        .await
    {
        Answer::Ok(answer) => {
            let data = match ServerFrame::decode(&answer) {
                Ok(ServerFrame::Chunk(c)) => c.data.len() as u64,
                _ => 0,
            };
            shared.stats.add(|s| {
                s.chunks_forwarded += 1;
                s.uplink_bytes += answer.len() as u64;
                s.device_bytes += data;
            });
            (Flow::Continue, Some(answer))
        }
        Answer::Unauthorized => (Flow::Close("credential refused by the server"), None),
        other => {
            log::warn(
                "chunk_unanswered",
                &[("device", dev.id.clone()), ("answer", format!("{other:?}"))],
            );
            (Flow::Continue, None)
        }
    }
}

async fn report(dev: &Device, seq: u32, body: Vec<u8>, shared: &Shared) -> (Flow, Option<Vec<u8>>) {
    match shared
        .spool
        .store(&dev.id, &dev.credential, seq, body)
        .await
    {
        // Durable on the gateway's disk: the device may forget it.
        Ok(Stored::New | Stored::Again) => {
            (Flow::Continue, encode(&ServerFrame::ReportAck { seq }, 16))
        }
        Ok(Stored::Full) => {
            log::warn("spool_full", &[("device", dev.id.clone())]);
            (Flow::Continue, None)
        }
        Err(e) => {
            // Not durable, so not acknowledged: the device keeps it and sends it again.
            log::warn(
                "spool_write_failed",
                &[("device", dev.id.clone()), ("error", e.to_string())],
            );
            (Flow::Continue, None)
        }
    }
}
