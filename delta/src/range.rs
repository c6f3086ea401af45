//! The binary range coder (LZMA's: 11-bit adaptive probabilities, shift 5, byte-wise carry):
//! the decoder over a small window of the stream, and the host encoder.

/// An adaptive probability that the next bit is 0, in 1/2048ths.
pub(crate) type Prob = u16;
pub(crate) const PROB_INIT: Prob = 1 << (PROB_BITS - 1);
const PROB_BITS: u32 = 11;
const MOVE_BITS: u32 = 5;
const TOP: u32 = 1 << 24;

/// The bytes a coded symbol may consume at most: the decoder decodes a symbol only with this
/// many in its window (or the block's last byte there). The longest symbol is an operation
/// header: 2 choice bits and two numbers, each at most 34 adaptive bits (at most 6.1 bits of
/// stream each: a probability is never below 31/2048) and 30 direct ones, so under 70 bytes.
pub(crate) const MAX_SYMBOL_BYTES: usize = 96;
/// The decoder's window on the stream.
pub(crate) const WINDOW: usize = 2 * MAX_SYMBOL_BYTES + 64;

/// Range decoder over the stream bytes the caller has pushed into its window.
#[derive(Debug)]
pub(crate) struct RangeDecoder {
    range: u32,
    code: u32,
    window: [u8; WINDOW],
    start: usize,
    end: usize,
    /// A read found the window empty: the block's bytes ran out (a corrupt or truncated block).
    pub(crate) overrun: bool,
}

impl RangeDecoder {
    pub(crate) const fn new() -> Self {
        Self {
            range: u32::MAX,
            code: 0,
            window: [0; WINDOW],
            start: 0,
            end: 0,
            overrun: false,
        }
    }

    /// Bytes in the window not consumed yet.
    pub(crate) fn available(&self) -> usize {
        self.end - self.start
    }

    /// Copies as much of `input` as fits (after moving what is left to the front); returns how
    /// many bytes it took.
    pub(crate) fn push(&mut self, input: &[u8]) -> usize {
        if self.start > 0 {
            self.window.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = self.window.get_mut(self.end..).unwrap_or_default();
        let n = room.len().min(input.len());
        if let (Some(dst), Some(src)) = (room.get_mut(..n), input.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.end += n;
        n
    }

    /// Starts a block: the window emptied, the coder's first five bytes read.
    pub(crate) fn begin(&mut self) {
        self.range = u32::MAX;
        self.code = 0;
        self.overrun = false;
        for _ in 0..5 {
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
    }

    /// Drops what is left of a block's bytes in the window (the coder's flush it did not need).
    pub(crate) fn discard(&mut self, n: usize) {
        self.start += n.min(self.available());
    }

    fn next_byte(&mut self) -> u8 {
        match self.window.get(self.start) {
            Some(&b) if self.start < self.end => {
                self.start += 1;
                b
            }
            _ => {
                self.overrun = true;
                0
            }
        }
    }

    fn normalize(&mut self) {
        if self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
    }

    pub(crate) fn decode_bit(&mut self, p: &mut Prob) -> u32 {
        let bound = (self.range >> PROB_BITS) * u32::from(*p);
        let bit = if self.code < bound {
            self.range = bound;
            *p += ((1 << PROB_BITS) - *p) >> MOVE_BITS;
            0
        } else {
            self.range -= bound;
            self.code -= bound;
            *p -= *p >> MOVE_BITS;
            1
        };
        self.normalize();
        bit
    }

    pub(crate) fn decode_direct(&mut self) -> u32 {
        self.range >>= 1;
        let bit = if self.code >= self.range {
            self.code -= self.range;
            1
        } else {
            0
        };
        self.normalize();
        bit
    }
}

/// Range encoder into a growing buffer (host).
#[cfg(feature = "std")]
#[derive(Debug)]
pub(crate) struct RangeEncoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    pub(crate) out: std::vec::Vec<u8>,
}

#[cfg(feature = "std")]
impl RangeEncoder {
    pub(crate) fn new() -> Self {
        Self {
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
            out: std::vec::Vec::new(),
        }
    }

    fn shift_low(&mut self) {
        if (self.low as u32) < 0xFF00_0000 || (self.low >> 32) != 0 {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                self.out.push(byte.wrapping_add(carry));
                byte = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    pub(crate) fn encode_bit(&mut self, p: &mut Prob, bit: u32) {
        let bound = (self.range >> PROB_BITS) * u32::from(*p);
        if bit == 0 {
            self.range = bound;
            *p += ((1 << PROB_BITS) - *p) >> MOVE_BITS;
        } else {
            self.low += u64::from(bound);
            self.range -= bound;
            *p -= *p >> MOVE_BITS;
        }
        self.normalize();
    }

    pub(crate) fn encode_direct(&mut self, bit: u32) {
        self.range >>= 1;
        if bit != 0 {
            self.low += u64::from(self.range);
        }
        self.normalize();
    }

    pub(crate) fn finish(mut self) -> std::vec::Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }
}
