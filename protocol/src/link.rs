//! Byte framing of a serial link (UART, or a TCP socket standing for one): each frame is
//! COBS-encoded `payload ++ CRC-16` followed by a 0 byte, so a receiver that starts mid-stream,
//! or sees bytes lost or corrupted, finds the next frame at the next 0 and drops the bad one.
//!
//! The payload is a [`crate::DeviceFrame`] or [`crate::ServerFrame`]. No allocator: encoding
//! writes into the caller's buffer; [`Deframer`] collects bytes into a fixed array.

/// Largest payload a frame may carry: a chunk of `MAX_CHUNK` bytes or an update command with its
/// envelope and location, with room to spare.
pub const MAX_PAYLOAD: usize = crate::MAX_CHUNK + 256;
/// Largest encoded frame: COBS adds one byte per 254 and one at the start, then the CRC (which
/// COBS may grow too) and the delimiter.
pub const MAX_ENCODED: usize = MAX_PAYLOAD + MAX_PAYLOAD / 254 + 8;

/// Why bytes between two delimiters are not a frame. The receiver drops them and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// More bytes than `N` before a delimiter.
    TooLong,
    /// Not valid COBS, or shorter than a CRC.
    Malformed,
    /// The CRC does not match: bytes were changed or lost on the way.
    Crc,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LinkError::TooLong => "frame too long",
            LinkError::Malformed => "malformed frame",
            LinkError::Crc => "frame CRC mismatch",
        })
    }
}

impl core::error::Error for LinkError {}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), bitwise: small code, and a frame's few KiB
/// cost nothing next to the link's speed.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Encodes `payload` as one frame into `out`; returns the bytes used, or `None` when `out` is
/// too small (`MAX_ENCODED` always suffices for a payload of at most `MAX_PAYLOAD`).
pub fn encode(payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let crc = crc16(payload).to_le_bytes();
    let mut code_at = 0usize;
    let mut at = 1usize;
    let mut code = 1u8;
    for &b in payload.iter().chain(crc.iter()) {
        if b == 0 {
            *out.get_mut(code_at)? = code;
            code_at = at;
            at += 1;
            code = 1;
        } else {
            *out.get_mut(at)? = b;
            at += 1;
            code += 1;
            if code == 0xFF {
                *out.get_mut(code_at)? = code;
                code_at = at;
                at += 1;
                code = 1;
            }
        }
    }
    *out.get_mut(code_at)? = code;
    *out.get_mut(at)? = 0;
    Some(at + 1)
}

/// Collects a byte stream into frames: push bytes, take each complete frame's payload.
#[derive(Debug, Clone)]
pub struct Deframer<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for Deframer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deframer<N> {
    pub const fn new() -> Self {
        Deframer {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    /// Feeds one byte. At a delimiter returns the frame's payload, or why the bytes since the
    /// last delimiter are not a frame (empty runs between delimiters are skipped).
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], LinkError>> {
        if byte != 0 {
            if self.len < N {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflow = true;
            }
            return None;
        }
        let (len, overflow) = (self.len, self.overflow);
        self.len = 0;
        self.overflow = false;
        if overflow {
            return Some(Err(LinkError::TooLong));
        }
        if len == 0 {
            return None;
        }
        Some(self.decode(len))
    }

    /// Undoes COBS in place (the output never runs ahead of the input) and checks the CRC.
    fn decode(&mut self, len: usize) -> Result<&[u8], LinkError> {
        let mut read = 0usize;
        let mut write = 0usize;
        while read < len {
            let code = usize::from(self.buf[read]);
            if code == 0 || read + code > len {
                return Err(LinkError::Malformed);
            }
            read += 1;
            for _ in 1..code {
                self.buf[write] = self.buf[read];
                write += 1;
                read += 1;
            }
            if code < 0xFF && read < len {
                self.buf[write] = 0;
                write += 1;
            }
        }
        let body = write.checked_sub(2).ok_or(LinkError::Malformed)?;
        let crc = u16::from_le_bytes([self.buf[body], self.buf[body + 1]]);
        if crc16(&self.buf[..body]) != crc {
            return Err(LinkError::Crc);
        }
        Ok(&self.buf[..body])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(stream: &[u8]) -> std::vec::Vec<Result<std::vec::Vec<u8>, LinkError>> {
        let mut d = Deframer::<{ MAX_ENCODED }>::new();
        let mut out = std::vec::Vec::new();
        for &b in stream {
            if let Some(r) = d.push(b) {
                out.push(r.map(<[u8]>::to_vec));
            }
        }
        out
    }

    fn framed(payload: &[u8]) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; MAX_ENCODED];
        let n = encode(payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    extern crate std;

    #[test]
    fn known_vector() {
        // CRC-16/CCITT-FALSE of "123456789" is 0x29B1.
        assert_eq!(crc16(b"123456789"), 0x29B1);
        // [0x11, 0x00, 0x22] ++ crc: no zero but the one in the payload.
        let f = framed(&[0x11, 0x00, 0x22]);
        let crc = crc16(&[0x11, 0x00, 0x22]).to_le_bytes();
        assert_eq!(f[..3], [0x02, 0x11, 0x04]);
        assert_eq!(f[3..5], [0x22, crc[0]]);
        assert_eq!(*f.last().unwrap(), 0);
        assert_eq!(frames(&f), std::vec![Ok(std::vec![0x11, 0x00, 0x22])]);
    }

    #[test]
    fn resynchronises_after_garbage_and_corruption() {
        let a = framed(b"first");
        let mut b = framed(b"second");
        b[2] ^= 0x40; // a flipped bit
        let c = framed(b"third");
        let mut stream = std::vec![0x55, 0x66]; // the tail of a frame whose start was missed
        stream.push(0);
        stream.extend(&a);
        stream.extend(&b);
        stream.extend(&c);
        let got = frames(&stream);
        assert_eq!(got.len(), 4);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(b"first".to_vec()));
        assert_eq!(got[2], Err(LinkError::Crc));
        assert_eq!(got[3], Ok(b"third".to_vec()));
    }

    #[test]
    fn too_long_is_dropped_and_the_next_frame_read() {
        let mut d = Deframer::<8>::new();
        for _ in 0..20 {
            assert!(d.push(1).is_none());
        }
        assert_eq!(
            d.push(0).map(|r| r.map(<[u8]>::len)),
            Some(Err(LinkError::TooLong))
        );
        let ok = framed(b"ab");
        let mut last = None;
        for &b in &ok {
            if let Some(r) = d.push(b) {
                last = Some(r.map(<[u8]>::to_vec));
            }
        }
        assert_eq!(last, Some(Ok(b"ab".to_vec())));
    }

    #[test]
    fn largest_payload_fits_its_bound() {
        let payload = std::vec![0xAB; MAX_PAYLOAD];
        assert!(framed(&payload).len() <= MAX_ENCODED);
        assert_eq!(frames(&framed(&payload)), std::vec![Ok(payload)]);
    }

    #[test]
    fn hello_travels_in_a_frame() {
        let hello = crate::DeviceFrame::Hello(crate::Hello {
            device_id: "line1-node-03",
            credential: "c2VjcmV0",
        });
        let mut msg = [0u8; 128];
        let n = hello.encode(&mut msg).unwrap();
        let got = frames(&framed(&msg[..n]));
        let payload = got[0].as_ref().unwrap();
        assert_eq!(crate::DeviceFrame::decode(payload).unwrap(), hello);
        // A credential with a space or control byte is refused, not passed on.
        let bad = crate::DeviceFrame::Hello(crate::Hello {
            device_id: "n",
            credential: "a b",
        });
        let n = bad.encode(&mut msg).unwrap();
        assert!(crate::DeviceFrame::decode(&msg[..n]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..700), 1..5)) {
            let mut stream = std::vec::Vec::new();
            for p in &payloads {
                stream.extend(framed(p));
            }
            let got = frames(&stream);
            let want: std::vec::Vec<_> = payloads.iter().cloned().map(Ok).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn never_panics_on_noise(noise in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = frames(&noise);
        }
    }
}
