//! The command: the server's answer to a check-in (idle, update, revert, reboot).

use super::skip_value;
use super::{dec_kind, dec_str};
use crate::MAX_URL;
use crate::codec::{EncodeError, Error, Message};
use artifact::ComponentKind;
use artifact::cbor::uint;
use artifact::cbor::{Decode, Reader};
use minicbor::Encoder;
use minicbor::encode::Write;

/// A delta or compressed stream of a release's payloads (`docs/delta-format.md`), fetched by
/// `ChunkRequest::stream = Some(id)`. Not trusted: the device checks what it rebuilds against
/// the signed manifest, as for the plain payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOffer {
    pub id: u64,
    /// Bytes of the stream.
    pub len: u32,
    /// SHA-256 of the payloads it is a delta from (the device's running firmware image or its
    /// active model and validation set); `None`: compressed, no base.
    pub base_sha256: Option<[u8; 32]>,
}

/// Server to device, in answer to a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing new; check in again after this many seconds.
    Idle { poll_after_s: u32 },
    /// Install a release: its signed manifest envelope, and where its payloads are fetched
    /// (concatenated in manifest order, by offset).
    Update {
        release: u64,
        envelope: &'a [u8],
        url: &'a str,
        /// The same payloads in fewer bytes, for a device that said it decodes them (key 7,
        /// revision 1.3; optional: a device that does not know it fetches the plain payloads).
        stream: Option<StreamOffer>,
    },
    /// Go back to the previous version of a component (a rollout was rolled back).
    Revert { component: ComponentKind },
    /// Restart (after the next report is delivered).
    Reboot,
}

impl<'a> Message<'a> for Command<'a> {
    fn field_count(&self) -> u64 {
        match self {
            Command::Idle { .. } | Command::Revert { .. } => 2,
            Command::Update { stream, .. } => 4 + u64::from(stream.is_some()),
            Command::Reboot => 1,
        }
    }

    fn encode_fields<W: Write>(&self, e: &mut Encoder<W>) -> Result<(), EncodeError<W>> {
        match self {
            Command::Idle { poll_after_s } => {
                e.u8(1)?.u8(0)?.u8(2)?.u32(*poll_after_s)?;
            }
            Command::Update {
                release,
                envelope,
                url,
                stream,
            } => {
                e.u8(1)?
                    .u8(1)?
                    .u8(3)?
                    .u64(*release)?
                    .u8(4)?
                    .bytes(envelope)?
                    .u8(5)?
                    .str(url)?;
                if let Some(s) = stream {
                    e.u8(7)?.map(2 + u64::from(s.base_sha256.is_some()))?;
                    e.u8(0)?.u64(s.id)?.u8(1)?.u32(s.len)?;
                    if let Some(b) = &s.base_sha256 {
                        e.u8(2)?.bytes(b)?;
                    }
                }
            }
            Command::Revert { component } => {
                e.u8(1)?.u8(2)?.u8(6)?.u8(*component as u8)?;
            }
            Command::Reboot => {
                e.u8(1)?.u8(3)?;
            }
        }
        Ok(())
    }

    fn decode_field(&mut self, key: u64, d: &mut Reader<'a>) -> Result<(), Error> {
        // Fields land in a scratch command: the kind (key 1) comes first, its fields follow.
        match (key, &mut *self) {
            (1, cmd) => {
                *cmd = match uint::<u8>(d)? {
                    0 => Command::Idle {
                        poll_after_s: u32::MAX,
                    },
                    1 => Command::Update {
                        release: u64::MAX,
                        envelope: &[],
                        url: "",
                        stream: None,
                    },
                    2 => Command::Revert {
                        component: ComponentKind::ValidationSet,
                    },
                    3 => Command::Reboot,
                    _ => return Err(artifact::Error::InvalidValue.into()),
                }
            }
            (2, Command::Idle { poll_after_s }) => *poll_after_s = uint(d)?,
            (3, Command::Update { release, .. }) => *release = uint(d)?,
            (4, Command::Update { envelope, .. }) => {
                let b = d.byte_string()?;
                if b.len() > artifact::MAX_ENVELOPE_LEN {
                    return Err(artifact::Error::TooLarge.into());
                }
                *envelope = b;
            }
            (5, Command::Update { url, .. }) => *url = dec_str(d, MAX_URL)?,
            (6, Command::Revert { component }) => *component = dec_kind(d)?,
            (7, Command::Update { stream, .. }) => *stream = Some(dec_stream(d)?),
            _ => skip_value(d)?,
        }
        Ok(())
    }

    fn empty() -> Self {
        // An invalid marker: `finish` refuses a command whose kind never came.
        Command::Revert {
            component: ComponentKind::ValidationSet,
        }
    }

    fn finish(self) -> Result<Self, Error> {
        let complete = match self {
            Command::Idle { poll_after_s } => poll_after_s != u32::MAX,
            Command::Update {
                release,
                envelope,
                url,
                ..
            } => release != u64::MAX && !envelope.is_empty() && !url.is_empty(),
            Command::Revert { component } => component != ComponentKind::ValidationSet,
            Command::Reboot => true,
        };
        if complete {
            Ok(self)
        } else {
            Err(artifact::Error::MissingField.into())
        }
    }
}

/// A stream offer: id and length required, the base's digest exactly 32 bytes when present.
fn dec_stream(d: &mut Reader<'_>) -> Result<StreamOffer, Error> {
    let mut s = StreamOffer {
        id: u64::MAX,
        len: 0,
        base_sha256: None,
    };
    let mut seen = 0u8;
    super::dec_map(d, |k, d| {
        match k {
            0 => s.id = uint(d)?,
            1 => s.len = uint(d)?,
            2 => {
                let b: [u8; 32] = d
                    .byte_string()?
                    .try_into()
                    .map_err(|_| artifact::Error::InvalidValue)?;
                s.base_sha256 = Some(b);
            }
            _ => return Ok(false),
        }
        seen |= 1 << k;
        Ok(true)
    })?;
    if seen & 0b11 != 0b11 {
        return Err(artifact::Error::MissingField.into());
    }
    Ok(s)
}
