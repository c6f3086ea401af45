//! The command: the server's answer to a check-in (idle, update, revert, reboot).

use super::{dec_kind, dec_str};
use crate::MAX_URL;
use crate::codec::{EncodeError, Error, Message};
use artifact::ComponentKind;
use artifact::cbor::{skip_value, uint};
use minicbor::encode::Write;
use minicbor::{Decoder, Encoder};

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
            Command::Update { .. } => 4,
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
            } => {
                e.u8(1)?
                    .u8(1)?
                    .u8(3)?
                    .u64(*release)?
                    .u8(4)?
                    .bytes(envelope)?
                    .u8(5)?
                    .str(url)?;
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

    fn decode_field(&mut self, key: u64, d: &mut Decoder<'a>) -> Result<(), Error> {
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
                let b = d.bytes()?;
                if b.len() > artifact::MAX_ENVELOPE_LEN {
                    return Err(artifact::Error::TooLarge.into());
                }
                *envelope = b;
            }
            (5, Command::Update { url, .. }) => *url = dec_str(d, MAX_URL)?,
            (6, Command::Revert { component }) => *component = dec_kind(d)?,
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
