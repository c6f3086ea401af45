//! Console lines assembled in one buffer and written at once (no `core::fmt`: kilobytes of
//! code saved), so a reader never sees a line in pieces.

/// Bytes of the longest console line; longer text is cut.
const MAX_LINE: usize = 120;

/// A console line being built.
#[derive(Debug)]
pub struct Line {
    buf: [u8; MAX_LINE],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; MAX_LINE],
            len: 0,
        }
    }

    /// Appends text (cut at the line's end, keeping room for the `\n`).
    pub fn text(mut self, s: &[u8]) -> Self {
        let room = MAX_LINE - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    /// Appends a decimal number (u32: no 64-bit division linked).
    pub fn num(self, n: u32) -> Self {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.text(&digits[at..])
    }

    /// The whole line, `\n` included.
    pub fn end(&mut self) -> &[u8] {
        self.buf[self.len] = b'\n';
        &self.buf[..=self.len]
    }
}

/// A count for a console line: saturated, never wrapped.
pub(crate) fn count(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_and_cut_at_their_bound() {
        let mut l = Line::new().text(b"agent: inferences ").num(110);
        assert_eq!(l.end(), b"agent: inferences 110\n");
        let mut l = Line::new().num(0).text(b" ").num(u32::MAX);
        assert_eq!(l.end(), b"0 4294967295\n");
        let mut long = Line::new().text(&[b'x'; 200]);
        let bytes = long.end();
        assert_eq!(bytes.len(), MAX_LINE);
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(count(u64::MAX), u32::MAX);
    }
}
