//! How each symbol of a coded block is coded: written once over [`Coder`], which the encoder
//! implements by coding the value it is given and the decoder by returning the value it reads.

use crate::range::{PROB_INIT, Prob, RangeDecoder};

/// One binary decision or raw bit: encode `bit` (encoder) or decode one (decoder, `bit`
/// ignored); either way the bit coded is returned.
pub(crate) trait Coder {
    fn bit(&mut self, p: &mut Prob, bit: u32) -> u32;
    fn direct(&mut self, bit: u32) -> u32;
}

impl Coder for RangeDecoder {
    fn bit(&mut self, p: &mut Prob, _: u32) -> u32 {
        self.decode_bit(p)
    }
    fn direct(&mut self, _: u32) -> u32 {
        self.decode_direct()
    }
}

#[cfg(feature = "std")]
impl Coder for crate::range::RangeEncoder {
    fn bit(&mut self, p: &mut Prob, bit: u32) -> u32 {
        self.encode_bit(p, bit);
        bit
    }
    fn direct(&mut self, bit: u32) -> u32 {
        self.encode_direct(bit);
        bit
    }
}

/// What an operation does; the block's bytes come from a run of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OpKind {
    /// `len` literal bytes follow.
    #[default]
    Literal,
    /// `len` bytes of the base from `expected + seek`, each plus a coded difference.
    Copy,
    /// `len` bytes from `dist` bytes back in this block.
    Match,
}

/// An operation's header. `arg`: the copy's seek (zigzag) or the match's distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Op {
    pub kind: OpKind,
    pub len: u32,
    pub arg: u32,
}

/// The shortest match coded (a shorter one costs more than its literals).
pub(crate) const MIN_MATCH: u32 = 3;
const NUMBER_BITS: usize = 32;

/// An Elias-gamma number with adaptive bits: its bit length in unary, then the two bits below
/// the leading one as a bit tree under that length, then the rest raw.
#[derive(Debug, Clone)]
struct NumberModel {
    length: [Prob; NUMBER_BITS],
    top: [[Prob; 4]; NUMBER_BITS],
}

impl NumberModel {
    const fn new() -> Self {
        Self {
            length: [PROB_INIT; NUMBER_BITS],
            top: [[PROB_INIT; 4]; NUMBER_BITS],
        }
    }

    /// Codes `v` (at most `u32::MAX - 1`).
    fn code<C: Coder>(&mut self, c: &mut C, v: u32) -> u32 {
        let x = u64::from(v) + 1;
        let bits = 64 - x.leading_zeros() as usize;
        let mut n = 1;
        for p in self.length.iter_mut().take(NUMBER_BITS - 1) {
            if c.bit(p, u32::from(n < bits)) == 0 {
                break;
            }
            n += 1;
        }
        let mut value: u64 = 1;
        let mut node = 1;
        for i in (0..n - 1).rev() {
            let b = ((x >> i) & 1) as u32;
            let got = match self.top.get_mut(n - 1).and_then(|t| t.get_mut(node)) {
                Some(p) if node < 4 => {
                    let got = c.bit(p, b);
                    node = node * 2 + got as usize;
                    got
                }
                _ => c.direct(b),
            };
            value = (value << 1) | u64::from(got);
        }
        u32::try_from(value - 1).unwrap_or(u32::MAX)
    }
}

/// A byte as a bit tree of 255 adaptive probabilities (index 1..=255).
fn byte_tree<C: Coder>(c: &mut C, probs: &mut [Prob; 256], byte: u8) -> u8 {
    let mut node = 1usize;
    for i in (0..8).rev() {
        let b = u32::from((byte >> i) & 1);
        let got = match probs.get_mut(node) {
            Some(p) => c.bit(p, b),
            None => c.direct(b),
        };
        node = node * 2 + got as usize;
    }
    node as u8
}

/// Every probability of a block's coder; a block starts from [`Models::new`].
#[derive(Debug, Clone)]
pub(crate) struct Models {
    /// Literal or not, then match or copy, after each kind of operation.
    choice: [[Prob; 2]; 3],
    /// Literals by the parity of their position (Thumb code: low and high byte of a halfword).
    literal: [[Prob; 256]; 2],
    /// A copy's difference: zero or not, after a zero and after a non-zero one.
    zero: [Prob; 2],
    difference: [Prob; 256],
    literal_len: NumberModel,
    copy_len: NumberModel,
    seek: NumberModel,
    match_len: NumberModel,
    distance: NumberModel,
}

impl Models {
    pub(crate) const fn new() -> Self {
        Self {
            choice: [[PROB_INIT; 2]; 3],
            literal: [[PROB_INIT; 256]; 2],
            zero: [PROB_INIT; 2],
            difference: [PROB_INIT; 256],
            literal_len: NumberModel::new(),
            copy_len: NumberModel::new(),
            seek: NumberModel::new(),
            match_len: NumberModel::new(),
            distance: NumberModel::new(),
        }
    }

    /// An operation's header, after an operation of kind `prev`.
    pub(crate) fn op<C: Coder>(&mut self, c: &mut C, prev: OpKind, op: Op) -> Op {
        let [after_literal, after_copy, after_match] = &mut self.choice;
        let [is_literal, is_match] = match prev {
            OpKind::Literal => after_literal,
            OpKind::Copy => after_copy,
            OpKind::Match => after_match,
        };
        let kind = if c.bit(is_literal, u32::from(op.kind == OpKind::Literal)) == 1 {
            OpKind::Literal
        } else if c.bit(is_match, u32::from(op.kind == OpKind::Match)) == 1 {
            OpKind::Match
        } else {
            OpKind::Copy
        };
        let (len, arg) = match kind {
            OpKind::Literal => (
                self.literal_len
                    .code(c, op.len.wrapping_sub(1))
                    .saturating_add(1),
                0,
            ),
            OpKind::Copy => {
                let len = self
                    .copy_len
                    .code(c, op.len.wrapping_sub(1))
                    .saturating_add(1);
                (len, self.seek.code(c, op.arg))
            }
            OpKind::Match => {
                let len = self.match_len.code(c, op.len.wrapping_sub(MIN_MATCH));
                let dist = self.distance.code(c, op.arg.wrapping_sub(1));
                (len.saturating_add(MIN_MATCH), dist.saturating_add(1))
            }
        };
        Op { kind, len, arg }
    }

    /// A literal byte at output position `pos`.
    pub(crate) fn literal<C: Coder>(&mut self, c: &mut C, pos: usize, byte: u8) -> u8 {
        let [even, odd] = &mut self.literal;
        let probs = if pos % 2 == 0 { even } else { odd };
        byte_tree(c, probs, byte)
    }

    /// A copy's difference byte, after a zero one or not.
    pub(crate) fn difference<C: Coder>(&mut self, c: &mut C, after_zero: bool, d: u8) -> u8 {
        let [after_zero_p, after_other] = &mut self.zero;
        let zero = if after_zero {
            after_zero_p
        } else {
            after_other
        };
        if c.bit(zero, u32::from(d != 0)) == 0 {
            return 0;
        }
        byte_tree(c, &mut self.difference, d)
    }
}

/// Zigzag: a signed seek as an unsigned number, small either way.
#[cfg(feature = "std")]
pub(crate) fn zigzag(v: i64) -> u32 {
    (((v << 1) ^ (v >> 63)) as u64).min(u64::from(u32::MAX - 1)) as u32
}

pub(crate) fn unzigzag(v: u32) -> i64 {
    i64::from(v >> 1) ^ -i64::from(v & 1)
}
