//! Scenario 8: tampered artifacts reach a board (through a fake gateway that answers its
//! check-in with an update command, as a compromised link or server would) and are refused
//! before the first flash write of the update; the server refuses the same bundles at upload.

use crate::board::Board;
use crate::line::Line;
use crate::releases;
use anyhow::{Context, Result, bail, ensure};
use artifact::Version;
use fleet_sim::fixtures::GOOD;
use fleet_sim::release::STRICT;
use protocol::link::{Deframer, MAX_ENCODED, MAX_PAYLOAD};
use protocol::{Command, DeviceFrame, ServerFrame, Step};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The update slots' bytes: what a refused update must leave untouched.
fn slots(b: &Board) -> Result<Vec<u8>> {
    let flash = std::fs::read(b.flash_path())?;
    let l = layout::MPS2_AN386;
    let mut out = Vec::new();
    for r in [l.dfu, l.model_a, l.model_b] {
        out.extend_from_slice(&flash[r.offset as usize..r.end() as usize]);
    }
    Ok(out)
}

/// One side of a link, speaking as the gateway.
struct FakeGateway {
    stream: TcpStream,
    rx: Deframer<MAX_ENCODED>,
    buf: Vec<u8>,
}

impl FakeGateway {
    fn send(&mut self, frame: &ServerFrame<'_>) -> Result<()> {
        let mut msg = vec![0u8; MAX_PAYLOAD];
        let n = frame.encode(&mut msg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut wire = vec![0u8; MAX_ENCODED];
        let m = protocol::link::encode(&msg[..n], &mut wire).context("frame too long")?;
        self.stream.write_all(&wire[..m])?;
        Ok(())
    }

    /// The next device frame, handed to `f` (frames borrow the receive buffer).
    fn next<T>(&mut self, until: Instant, f: impl Fn(DeviceFrame<'_>) -> T) -> Result<T> {
        loop {
            while let Some(&byte) = self.buf.first() {
                self.buf.remove(0);
                if let Some(Ok(payload)) = self.rx.push(byte)
                    && let Ok(frame) = DeviceFrame::decode(payload)
                {
                    return Ok(f(frame));
                }
            }
            if Instant::now() > until {
                bail!("no frame from the board");
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the board closed the link"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    CheckIn,
    Report(u32, Step),
    Chunk,
    Other,
}

/// Answers the board's first check-in with a one-second poll interval, so that each offer
/// below comes a second after the last.
fn prime(link: &mut FakeGateway) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while !link.next(until, |f| matches!(f, DeviceFrame::CheckIn(_)))? {}
    link.send(&ServerFrame::Command(Command::Idle { poll_after_s: 1 }))
}

/// Offers `envelope` to the board on `link`; returns the step it reported.
fn offer(link: &mut FakeGateway, release: u64, envelope: &[u8]) -> Result<Step> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = link.next(until, |f| match f {
            DeviceFrame::CheckIn(_) => Seen::CheckIn,
            DeviceFrame::Report(r) => Seen::Report(r.seq, r.step),
            DeviceFrame::ChunkRequest(_) => Seen::Chunk,
            DeviceFrame::Hello(_) => Seen::Other,
        })?;
        match seen {
            Seen::CheckIn => link.send(&ServerFrame::Command(Command::Update {
                release,
                envelope,
                url: "/api/device/artifacts/0",
                stream: None,
            }))?,
            Seen::Report(seq, step) => {
                link.send(&ServerFrame::ReportAck { seq })?;
                return Ok(step);
            }
            Seen::Chunk => bail!("the board asked for the payload of a tampered release"),
            Seen::Other => {}
        }
    }
}

pub fn tampered(line: &mut Line, firmware_image: &[u8]) -> Result<String> {
    // A model signed by the right key, then its signature spoiled.
    let good = releases::envelope_of(&releases::model(&GOOD, Version::new(9, 0, 0), 9, STRICT)?)?;
    let mut bad_signature = good.clone();
    let at = bad_signature.len() - 10; // inside the last signature
    bad_signature[at] ^= 0x01;
    let wrong_board = releases::envelope_of(&fleet_sim::release::model_bundle(
        &GOOD,
        "digits",
        Version::new(9, 0, 1),
        9,
        "nrf52840-dk",
        STRICT,
        &[testkit::keys::signing_key()],
    )?)?;
    // A firmware signed with security counter 1: below what the boards run (2 or more).
    let lower_counter = releases::envelope_of(&releases::firmware(
        firmware_image,
        Version::new(9, 0, 2),
        1,
    )?)?;
    let cases: [(&str, &[u8], Step); 3] = [
        (
            "bad signature",
            &bad_signature,
            Step::Failed(protocol::Failure::Manifest(artifact::Error::BadSignature)),
        ),
        (
            "wrong board",
            &wrong_board,
            Step::Failed(protocol::Failure::Manifest(artifact::Error::WrongBoard)),
        ),
        (
            "lower security counter",
            &lower_counter,
            Step::Failed(protocol::Failure::Manifest(
                artifact::Error::SecurityCounter,
            )),
        ),
    ];

    // The server refuses the bad signature at upload already (a release for another board it
    // keeps for that board's devices; only the device knows its security counter).
    let refused = line.op.upload(
        artifact::bundle::write(&bad_signature, &[GOOD.model, GOOD.set])
            .map_err(|e| anyhow::anyhow!("bundle: {e}"))?,
    );
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("bad_signature")),
        "the server took a bundle with a bad signature: {refused:?}"
    );

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let gateway_port = line.gateway_port;
    let board = &mut line.boards[0];
    board.power_off();
    board.power_on(port)?;
    let (stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut link = FakeGateway {
        stream,
        rx: Deframer::new(),
        buf: Vec::new(),
    };
    prime(&mut link)?;
    let mut refused = Vec::new();
    for (i, (name, envelope, want)) in cases.iter().enumerate() {
        let before = slots(board)?;
        let step = offer(&mut link, 9000 + i as u64, envelope)?;
        ensure!(
            step == *want,
            "{name}: the board reported {step:?}, not {want:?}"
        );
        ensure!(slots(board)? == before, "{name}: the update slots changed");
        refused.push(*name);
    }
    drop(link);
    board.power_off();
    board.power_on(gateway_port)?;
    Ok(format!(
        "{} refused by {} before any flash write: {}",
        refused.len(),
        board.id,
        refused.join(", ")
    ))
}
