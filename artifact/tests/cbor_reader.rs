//! `cbor::Reader`, the decoder of every artifact document, against minicbor: what minicbor's
//! encoder writes it reads back; on arbitrary bytes it answers as minicbor's decoder does, but
//! for the indefinite lengths it refuses; hostile lengths and nesting end in errors, never a
//! panic, a hang or deep recursion.

use artifact::Error;
use artifact::cbor::{Decode, Reader};
use minicbor::{Decoder, Encoder};
use proptest::prelude::*;

/// One item of the kinds the formats use and the kinds an unknown field may hold.
#[derive(Debug, Clone)]
enum Item {
    Unsigned(u64),
    Negative(i64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Item>),
    Map(Vec<(u64, Item)>),
    Tagged(u64, Box<Item>),
    Float(f64),
    Bool(bool),
}

fn item() -> impl Strategy<Value = Item> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Item::Unsigned),
        (i64::MIN..0).prop_map(Item::Negative),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Item::Bytes),
        ".{0,20}".prop_map(Item::Text),
        any::<f64>().prop_map(Item::Float),
        any::<bool>().prop_map(Item::Bool),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Item::Array),
            prop::collection::vec((any::<u64>(), inner.clone()), 0..6).prop_map(Item::Map),
            (any::<u64>(), inner).prop_map(|(t, i)| Item::Tagged(t, Box::new(i))),
        ]
    })
}

fn encode(e: &mut Encoder<Vec<u8>>, item: &Item) {
    match item {
        Item::Unsigned(v) => e.u64(*v).map(drop),
        Item::Negative(v) => e.i64(*v).map(drop),
        Item::Bytes(b) => e.bytes(b).map(drop),
        Item::Text(s) => e.str(s).map(drop),
        Item::Array(items) => {
            e.array(items.len() as u64).unwrap();
            items.iter().for_each(|i| encode(e, i));
            Ok(())
        }
        Item::Map(entries) => {
            e.map(entries.len() as u64).unwrap();
            for (k, v) in entries {
                e.u64(*k).unwrap();
                encode(e, v);
            }
            Ok(())
        }
        Item::Tagged(t, i) => {
            e.tag(minicbor::data::Tag::new(*t)).unwrap();
            encode(e, i);
            Ok(())
        }
        Item::Float(f) => e.f64(*f).map(drop),
        Item::Bool(b) => e.bool(*b).map(drop),
    }
    .unwrap();
}

fn to_bytes(item: &Item) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    encode(&mut e, item);
    e.into_writer()
}

/// Reads `item` back with the reader's typed calls (what the decoders of the formats do).
fn read_back(r: &mut Reader<'_>, item: &Item) {
    match item {
        Item::Unsigned(v) => assert_eq!(r.unsigned(), Ok(*v)),
        Item::Bytes(b) => assert_eq!(r.byte_string(), Ok(&b[..])),
        Item::Text(s) => assert_eq!(r.text(), Ok(&s[..])),
        Item::Array(items) => {
            assert_eq!(r.array_header(), Ok(items.len() as u64));
            items.iter().for_each(|i| read_back(r, i));
        }
        Item::Map(entries) => {
            assert_eq!(r.map_header(), Ok(entries.len() as u64));
            for (k, v) in entries {
                assert_eq!(r.unsigned(), Ok(*k));
                read_back(r, v);
            }
        }
        // Not read by any format: skipped whole, as an unknown field's value is.
        _ => assert_eq!(r.skip_item(), Ok(())),
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Unsigned,
    ByteString,
    Text,
    Array,
    Map,
    Skip,
}

/// One call's outcome (as bytes, so every call compares with one type) and, when it succeeded,
/// the position after it (after an error no decoder reads on).
fn outcome<'b>(d: &mut impl Decode<'b>, op: Op) -> (Result<Vec<u8>, Error>, Option<usize>) {
    let r = match op {
        Op::Unsigned => d.unsigned().map(|v| v.to_be_bytes().to_vec()),
        Op::ByteString => d.byte_string().map(|b| b.to_vec()),
        Op::Text => d.text().map(|s| s.as_bytes().to_vec()),
        Op::Array => d.array_header().map(|v| v.to_be_bytes().to_vec()),
        Op::Map => d.map_header().map(|v| v.to_be_bytes().to_vec()),
        Op::Skip => d.skip_item().map(|()| Vec::new()),
    };
    let at = r.is_ok().then(|| d.position());
    (r, at)
}

/// The same call on both decoders.
#[allow(clippy::type_complexity)]
fn both(
    bytes: &[u8],
    op: Op,
) -> (
    (Result<Vec<u8>, Error>, Option<usize>),
    (Result<Vec<u8>, Error>, Option<usize>),
) {
    (
        outcome(&mut Reader::new(bytes), op),
        outcome(&mut Decoder::new(bytes), op),
    )
}

/// The same value at the same position, or both an error. The kinds of error may differ on an
/// item of the wrong type whose argument is cut short: minicbor reads on to name the type
/// (`Truncated`), this reader stops at the type (`Malformed`).
fn agree(
    ours: &(Result<Vec<u8>, Error>, Option<usize>),
    theirs: &(Result<Vec<u8>, Error>, Option<usize>),
) -> bool {
    ours == theirs || (ours.0.is_err() && theirs.0.is_err())
}

/// Initial bytes of indefinite-length items and the break code: what only minicbor accepts.
fn has_indefinite(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|b| matches!(b, 0x5f | 0x7f | 0x9f | 0xbf | 0xff))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn reads_back_what_minicbor_writes(item in item()) {
        let bytes = to_bytes(&item);
        let mut r = Reader::new(&bytes);
        read_back(&mut r, &item);
        prop_assert_eq!(Decode::position(&r), bytes.len());
        // And skipping the whole item consumes exactly it.
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.skip_item(), Ok(()));
        prop_assert_eq!(Decode::position(&r), bytes.len());
    }

    #[test]
    fn every_truncation_is_truncated(item in item()) {
        let bytes = to_bytes(&item);
        for n in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..n]);
            prop_assert_eq!(r.skip_item(), Err(Error::Truncated), "{} of {}", n, bytes.len());
        }
    }

    #[test]
    fn answers_as_minicbor(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for op in [Op::Unsigned, Op::ByteString, Op::Text, Op::Array, Op::Map, Op::Skip] {
            let (ours, theirs) = both(&bytes, op);
            if !agree(&ours, &theirs) {
                // The one difference allowed: an indefinite length minicbor skips over.
                prop_assert!(
                    matches!(op, Op::Skip) && ours.0 == Err(Error::Malformed) && has_indefinite(&bytes),
                    "{:?} on {:02x?}: ours {:?}, minicbor {:?}", op, bytes, ours, theirs
                );
            }
        }
    }

    #[test]
    fn answers_as_minicbor_on_encoded_items(item in item(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut bytes = to_bytes(&item);
        let i = cut.index(bytes.len());
        bytes[i] ^= flip;
        let (ours, theirs) = both(&bytes, Op::Skip);
        if !agree(&ours, &theirs) {
            prop_assert!(ours.0 == Err(Error::Malformed) && has_indefinite(&bytes),
                "{:02x?}: ours {:?}, minicbor {:?}", bytes, ours, theirs);
        }
    }
}

#[test]
fn hostile_lengths_are_truncated_at_once() {
    // A byte string and a text of 2^64 - 1 bytes.
    for major in [0x5b, 0x7b] {
        let mut bytes = vec![major];
        bytes.extend([0xff; 8]);
        assert_eq!(Reader::new(&bytes).skip_item(), Err(Error::Truncated));
    }
    assert_eq!(
        Reader::new(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).byte_string(),
        Err(Error::Truncated)
    );
    // A map and an array claiming 2^64 - 1 entries, with three present.
    for head in [0xbb, 0x9b] {
        let mut bytes = vec![head];
        bytes.extend([0xff; 8]);
        bytes.extend([0, 0, 0]);
        assert_eq!(Reader::new(&bytes).skip_item(), Err(Error::Truncated));
    }
}

#[test]
fn deep_nesting_is_counted_not_recursed() {
    // A million nested one-entry arrays, then a zero: skipped in constant stack.
    let mut bytes = vec![0x81; 1_000_000];
    bytes.push(0);
    let mut r = Reader::new(&bytes);
    assert_eq!(r.skip_item(), Ok(()));
    assert_eq!(Decode::position(&r), bytes.len());
    // Tags likewise.
    let mut tags = vec![0xc1; 1_000_000];
    tags.push(0);
    assert_eq!(Reader::new(&tags).skip_item(), Ok(()));
}

#[test]
fn indefinite_reserved_and_break_are_malformed() {
    for bytes in [
        &[0x5f, 0x41, 0x00, 0xff][..], // indefinite byte string
        &[0x7f, 0xff],                 // indefinite text
        &[0x9f, 0xff],                 // indefinite array
        &[0xbf, 0xff],                 // indefinite map
        &[0xff],                       // break
        &[0x1c],                       // reserved additional information
        &[0x3d],
        &[0xfc],
        &[0x82, 0x00, 0x9f, 0xff], // indefinite inside a definite array
    ] {
        assert_eq!(
            Reader::new(bytes).skip_item(),
            Err(Error::Malformed),
            "{bytes:02x?}"
        );
    }
    assert_eq!(
        Reader::new(&[0x9f, 0xff]).array_header(),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reader::new(&[0xbf, 0xff]).map_header(),
        Err(Error::Malformed)
    );
}

#[test]
fn wrong_types_are_malformed_before_their_argument() {
    // A negative integer whose argument is missing: the type is wrong first.
    assert_eq!(Reader::new(&[0x3b]).unsigned(), Err(Error::Malformed));
    assert_eq!(Reader::new(&[0x1b, 0]).unsigned(), Err(Error::Truncated));
    assert_eq!(Reader::new(&[0x43, b'a']).text(), Err(Error::Malformed));
    assert_eq!(
        Reader::new(&[0x62, 0xc3, 0x28]).text(),
        Err(Error::Malformed)
    );
    assert_eq!(Reader::new(&[0x62, b'o', b'k']).text(), Ok("ok"));
    // Integers of any width are read (signatures cover the bytes; minimality is the writer's).
    assert_eq!(
        Reader::new(&[0x1b, 0, 0, 0, 0, 0, 0, 0, 5]).unsigned(),
        Ok(5)
    );
}

/// `item` with every array, map, byte and text string written with an indefinite length where
/// `indefinite` says (byte and text strings in two chunks).
fn encode_any_length(e: &mut Encoder<Vec<u8>>, item: &Item, indefinite: bool) {
    match item {
        Item::Bytes(b) if indefinite => {
            let (x, y) = b.split_at(b.len() / 2);
            e.begin_bytes().unwrap().bytes(x).unwrap().bytes(y).unwrap();
            e.end().map(drop)
        }
        Item::Text(s) if indefinite => {
            e.begin_str().unwrap().str(s).unwrap();
            e.end().map(drop)
        }
        Item::Array(items) if indefinite => {
            e.begin_array().unwrap();
            items
                .iter()
                .for_each(|i| encode_any_length(e, i, !indefinite));
            e.end().map(drop)
        }
        Item::Map(entries) if indefinite => {
            e.begin_map().unwrap();
            for (k, v) in entries {
                e.u64(*k).unwrap();
                encode_any_length(e, v, !indefinite);
            }
            e.end().map(drop)
        }
        Item::Array(items) => {
            e.array(items.len() as u64).unwrap();
            items
                .iter()
                .for_each(|i| encode_any_length(e, i, !indefinite));
            Ok(())
        }
        Item::Map(entries) => {
            e.map(entries.len() as u64).unwrap();
            for (k, v) in entries {
                e.u64(*k).unwrap();
                encode_any_length(e, v, !indefinite);
            }
            Ok(())
        }
        Item::Tagged(t, i) => {
            e.tag(minicbor::data::Tag::new(*t)).unwrap();
            encode_any_length(e, i, indefinite);
            Ok(())
        }
        other => {
            encode(e, other);
            Ok(())
        }
    }
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// What the protocol skips: every item, indefinite lengths included, to its end as minicbor
    /// does, and any cut of it is truncated.
    #[test]
    fn skip_any_length_skips_indefinite_items(item in item(), indefinite in any::<bool>()) {
        let mut e = Encoder::new(Vec::new());
        encode_any_length(&mut e, &item, indefinite);
        let bytes = e.into_writer();
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.skip_any_length(), Ok(()));
        prop_assert_eq!(Decode::position(&r), bytes.len());
        let mut d = Decoder::new(&bytes);
        prop_assert!(d.skip().is_ok());
        for n in 0..bytes.len() {
            prop_assert_eq!(Reader::new(&bytes[..n]).skip_any_length(), Err(Error::Truncated));
        }
    }

    /// On arbitrary bytes it skips what minicbor skips, to the same position; minicbor alone
    /// also skips a break outside any indefinite item.
    #[test]
    fn skip_any_length_answers_as_minicbor(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut r = Reader::new(&bytes);
        let ours = r.skip_any_length();
        let mut d = Decoder::new(&bytes);
        let theirs = d.skip();
        if ours.is_ok() {
            prop_assert!(theirs.is_ok(), "{:02x?}: minicbor {:?}", bytes, theirs);
            prop_assert_eq!(Decode::position(&r), d.position(), "{:02x?}", bytes);
        } else if theirs.is_ok() {
            prop_assert!(bytes.contains(&0xff), "{:02x?}: ours {:?}", bytes, ours);
        }
    }
}

#[test]
fn skip_any_length_bounds_and_breaks() {
    // Stray breaks, a chunk of another type, a nested indefinite chunk, a break inside a
    // definite array, too many open indefinite items.
    for bytes in [
        &[0xff][..],
        &[0x82, 0x00, 0xff],
        &[0x5f, 0x61, b'a', 0xff],
        &[0x5f, 0x5f, 0xff, 0xff],
        &[0x9f, 0x82, 0x00, 0xff],
        &[0x9f; 9],
        &[0x1c],
    ] {
        assert_eq!(
            Reader::new(bytes).skip_any_length(),
            Err(Error::Malformed),
            "{bytes:02x?}"
        );
    }
    let mut deep = vec![0x9f; 8];
    deep.extend([0xff; 8]);
    let mut r = Reader::new(&deep);
    assert_eq!(r.skip_any_length(), Ok(()));
    assert_eq!(Decode::position(&r), deep.len());
    // An indefinite map of two entries, the second an indefinite text.
    let bytes = [0xbf, 0x01, 0x02, 0x03, 0x7f, 0x61, b'x', 0xff, 0xff, 0x00];
    let mut r = Reader::new(&bytes);
    assert_eq!(r.skip_any_length(), Ok(()));
    assert_eq!(Decode::position(&r), bytes.len() - 1);
}
