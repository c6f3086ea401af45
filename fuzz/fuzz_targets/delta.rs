//! Fuzz target: the delta decoder on arbitrary streams, fed in pieces of every size, against a
//! base whose bounds it must respect, without an allocator, as on the device. Run:
//! `cargo xtask fuzz`.
#![no_main]

use delta::{Base, Decoder, Progress};
use libfuzzer_sys::fuzz_target;

/// A base of fixed bytes that fails the run if read outside the length the stream declares.
struct Checked {
    declared: u32,
}

impl Base for Checked {
    type Error = ();
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        assert!(
            offset as usize + buf.len() <= self.declared as usize,
            "read outside the base"
        );
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (offset as usize + i) as u8);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size; the rest is the stream.
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step) + 1;
    let mut d = Decoder::new();
    let mut base = Checked { declared: 0 };
    for piece in stream.chunks(step) {
        let mut at = 0;
        loop {
            match d.feed(&piece[at..], &mut base) {
                Ok((n, Progress::Header(h))) => {
                    base.declared = h.base_len;
                    at += n;
                }
                Ok((n, Progress::Block { data, .. })) => {
                    assert!(data.len() <= delta::BLOCK_SIZE);
                    at += n;
                }
                Ok((_, Progress::NeedInput)) | Ok((_, Progress::Done)) => break,
                Err(_) => return,
            }
        }
    }
});
