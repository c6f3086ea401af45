//! Streams made by the encoder decode to their target, whole, in pieces of any size, and
//! resumed at every block boundary.

use delta::decode::apply;
use delta::encode::{compress, delta};
use delta::{Checkpoint, Decoder, Header, Progress};

fn rng(seed: u64) -> impl FnMut() -> u8 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 24) as u8
    }
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut r = rng(seed);
    (0..n).map(|_| r()).collect()
}

fn firmware_like(n: usize, seed: u64) -> Vec<u8> {
    // Halfwords drawn from a small vocabulary: compressible, like code.
    let mut r = rng(seed);
    let vocab: Vec<[u8; 2]> = (0..300).map(|_| [r(), r() & 0x3f | 0x40]).collect();
    (0..n / 2)
        .flat_map(|_| vocab[usize::from(r()) % vocab.len()])
        .collect()
}

/// Decodes `stream` fed in pieces of `step` bytes.
fn decode_in_pieces(base: &[u8], stream: &[u8], step: usize) -> Vec<u8> {
    let mut d = Box::new(Decoder::new());
    let mut out = Vec::new();
    let mut base = base;
    for piece in stream.chunks(step) {
        let mut at = 0;
        loop {
            let (n, p) = d.feed(&piece[at..], &mut base).unwrap();
            at += n;
            match p {
                Progress::Block { index, data, .. } => {
                    assert_eq!(out.len(), index as usize * delta::BLOCK_SIZE);
                    out.extend_from_slice(data);
                }
                Progress::NeedInput => break,
                Progress::Header(_) => {}
                Progress::Done => {
                    assert_eq!(at, piece.len());
                    break;
                }
            }
        }
    }
    out
}

fn check(base: &[u8], target: &[u8], stream: &[u8]) {
    assert_eq!(apply(base, stream).unwrap(), target);
    for step in [1, 3, 64, 1000, 4096, 70_000] {
        assert_eq!(decode_in_pieces(base, stream, step), target, "step {step}");
    }
}

#[test]
fn compressed_streams_decode_to_their_target() {
    for target in [
        vec![],
        vec![7],
        vec![0; 4096],
        vec![0; 4097],
        random(10_000, 1),
        firmware_like(20_001, 2),
        include_bytes!("../../model/fixtures/good.tflite").to_vec(),
    ] {
        let stream = compress(&target).unwrap();
        check(&[], &target, &stream);
    }
}

#[test]
fn a_compressed_model_is_smaller() {
    let model = include_bytes!("../../model/fixtures/good.tflite");
    let stream = compress(model).unwrap();
    assert!(
        stream.len() * 100 < model.len() * 80,
        "{} of {}",
        stream.len(),
        model.len()
    );
}

#[test]
fn deltas_decode_to_their_target() {
    let base = firmware_like(60_000, 3);
    let mut inserted = base.clone();
    inserted.splice(30_000..30_000, random(200, 4));
    let mut replaced = base.clone();
    replaced[100..400].copy_from_slice(&random(300, 5));
    let mut shrunk = base[..50_000].to_vec();
    shrunk.extend_from_slice(&random(10, 6));
    for target in [
        base.clone(),
        inserted,
        replaced,
        shrunk,
        random(5000, 7),
        vec![],
    ] {
        let stream = delta(&base, &target).unwrap();
        check(&base, &target, &stream);
    }
}

#[test]
fn a_small_change_makes_a_small_delta() {
    let base = firmware_like(60_000, 8);
    let mut target = base.clone();
    target.splice(30_000..30_000, random(64, 9));
    let stream = delta(&base, &target).unwrap();
    assert!(stream.len() < 600, "{} bytes", stream.len());
}

#[test]
fn a_stream_resumes_at_every_block_boundary() {
    let base = firmware_like(40_000, 10);
    let mut target = base.clone();
    target.splice(10_000..10_000, random(3000, 11));
    let stream = delta(&base, &target).unwrap();
    let header = Header::parse(&stream).unwrap();
    // The checkpoints an uninterrupted decode gives out.
    let mut checkpoints = vec![Checkpoint {
        block: 0,
        stream_offset: delta::HEADER_LEN as u32,
    }];
    let mut d = Box::new(Decoder::new());
    let (mut at, mut b) = (0, &base[..]);
    loop {
        let (n, p) = d.feed(&stream[at..], &mut b).unwrap();
        at += n;
        match p {
            Progress::Block { next, .. } => checkpoints.push(next),
            Progress::Done => break,
            _ => {}
        }
    }
    assert_eq!(checkpoints.len() as u32, header.blocks() + 1);
    for cp in checkpoints {
        let mut d = Box::new(Decoder::resume(header, cp));
        let (mut at, mut out) = (cp.stream_offset as usize, Vec::new());
        loop {
            let (n, p) = d.feed(&stream[at..], &mut b).unwrap();
            at += n;
            match p {
                Progress::Block { index, data, .. } => {
                    let start = index as usize * delta::BLOCK_SIZE;
                    assert_eq!(data, &target[start..start + data.len()]);
                    out.push(index);
                }
                Progress::Done => break,
                _ => {}
            }
        }
        assert_eq!(out, (cp.block..header.blocks()).collect::<Vec<_>>());
    }
}

#[test]
fn the_decoder_fits_its_ram_budget() {
    assert!(size_of::<Decoder>() <= 8 * 1024, "{}", size_of::<Decoder>());
}

mod refusals {
    use super::*;
    use delta::{Error, FormatError};
    use proptest::prelude::*;

    fn decode(base: &[u8], stream: &[u8]) -> Result<Vec<u8>, FormatError> {
        apply(base, stream)
    }

    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let base = firmware_like(12_000, 20);
        let mut target = base.clone();
        target.splice(5000..5000, random(300, 21));
        let stream = delta(&base, &target).unwrap();
        (base, target, stream)
    }

    #[test]
    fn header_faults_are_named() {
        let (base, _, stream) = sample();
        let mut s = stream.clone();
        s[0] = b'X';
        assert_eq!(decode(&base, &s), Err(FormatError::BadMagic));
        let mut s = stream.clone();
        s[5] = 11; // another block size
        assert_eq!(decode(&base, &s), Err(FormatError::Unsupported));
        let mut s = stream.clone();
        s[4] = 9; // an unknown kind
        assert_eq!(decode(&base, &s), Err(FormatError::Unsupported));
        let mut s = compress(b"plain").unwrap();
        s[12] = 1; // a compressed stream claiming a base
        assert_eq!(decode(&base, &s), Err(FormatError::BadHeader));
        let mut s = stream.clone();
        s[8..12].copy_from_slice(&(u32::MAX).to_le_bytes()); // a target over the bound
        assert_eq!(decode(&base, &s), Err(FormatError::BadHeader));
        assert_eq!(decode(&base, &stream[..40]), Err(FormatError::Truncated));
    }

    #[test]
    fn block_faults_are_named() {
        let (base, target, stream) = sample();
        let at = delta::HEADER_LEN;
        // A stored block whose length is not its output's.
        let mut s = stream[..at].to_vec();
        s.extend_from_slice(&((1u32 << 31) | 100).to_le_bytes());
        s.extend_from_slice(&[0; 100]);
        assert_eq!(decode(&base, &s), Err(FormatError::BadBlock));
        // A coded block longer than any coding of 4 KiB.
        let mut s = stream[..at].to_vec();
        s.extend_from_slice(&(5000u32).to_le_bytes());
        assert_eq!(decode(&base, &s), Err(FormatError::BadBlock));
        // A stream cut inside a block, and one with bytes after its last block.
        assert_eq!(
            decode(&base, &stream[..stream.len() - 1]),
            Err(FormatError::Truncated)
        );
        let mut s = stream.clone();
        s.push(0);
        assert_eq!(decode(&base, &s), Err(FormatError::TrailingInput));
        assert_eq!(decode(&base, &stream).unwrap(), target);
    }

    #[test]
    fn a_copy_outside_the_base_is_refused_not_read() {
        let (base, _, mut stream) = sample();
        // The stream's header says the base is 100 bytes: its copies reach past that.
        stream[12..16].copy_from_slice(&100u32.to_le_bytes());
        let mut d = Box::new(Decoder::new());
        let mut b = &base[..];
        let mut at = 0;
        let err = loop {
            match d.feed(&stream[at..], &mut b) {
                Ok((n, Progress::Done)) => panic!("decoded to the end at {n}"),
                Ok((n, _)) => at += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err, Error::Format(FormatError::OutOfBounds));
    }

    #[test]
    fn a_base_read_failure_keeps_its_cause() {
        struct Broken;
        impl delta::Base for Broken {
            type Error = &'static str;
            fn read(&mut self, _: u32, _: &mut [u8]) -> Result<(), &'static str> {
                Err("flash read error")
            }
        }
        let (_, _, stream) = sample();
        let mut d = Box::new(Decoder::new());
        let mut at = 0;
        let err = loop {
            match d.feed(&stream[at..], &mut Broken) {
                Ok((n, Progress::Done)) => panic!("decoded to the end at {n}"),
                Ok((n, _)) => at += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err, Error::Base("flash read error"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any change to a stream is an error or decodes to something: never a panic, never a
        /// read outside the base (the slice base refuses one with `OutOfBounds`).
        #[test]
        fn corrupted_streams_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let (base, _, stream) = sample();
            let mut s = stream.clone();
            for (at, x) in flips {
                let i = at % s.len();
                s[i] ^= x | 1;
            }
            let _ = decode(&base, &s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000), delta_kind in any::<bool>()) {
            let base = firmware_like(5000, 22);
            let mut s = if delta_kind { delta(&base, &base[..10]).unwrap()[..80].to_vec() } else { compress(b"x").unwrap()[..80].to_vec() };
            s.extend_from_slice(&bytes);
            let _ = decode(&base, &s);
        }
    }
}
