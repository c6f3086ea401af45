//! Every message round-trips; bounds, versions and unknown fields are enforced; bad bytes are
//! errors, never panics.

use artifact::{ComponentKind, Version};
use proptest::prelude::*;
use protocol::*;

fn checkin() -> CheckIn<'static> {
    CheckIn {
        device_id: "line-1:node-07",
        board: "mps2-an386",
        firmware: Firmware {
            version: Version::new(2, 1, 0),
            status: BootStatus::Trial,
        },
        model: Some(RunningModel {
            name: "vibration",
            version: Version::new(1, 4, 0),
            slot: ModelSlot::B,
        }),
        update: Some(Progress {
            release: 42,
            offset: 8192,
            total: 30_000,
        }),
        validation: Some(Figures {
            samples: 360,
            accuracy_bp: 9_277,
            p50_us: 5_623,
            p99_us: 5_651,
        }),
        counters: Counters {
            boots: 3,
            inferences: 1 << 40,
            updates: 2,
            failures: 1,
            reverts: 1,
        },
        runtime_abi: Some(2),
        wait_ms: Some(25_000),
        streams: None,
    }
}

fn round_trip<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(m: &M, buf: &'a mut [u8]) -> M {
    let n = encode(m, buf).unwrap();
    let bytes: &'a [u8] = &buf[..n];
    let back: M = decode(bytes).unwrap();
    assert_eq!(&back, m);
    assert_eq!(to_vec(m), bytes, "to_vec and encode agree");
    back
}

#[test]
fn every_message_round_trips() {
    round_trip(&checkin(), &mut [0; 512]);
    round_trip(
        &CheckIn {
            model: None,
            update: None,
            validation: None,
            // A device before revision 1.1 does not say its runtime ABI.
            runtime_abi: None,
            ..checkin()
        },
        &mut [0; 512],
    );
    for cmd in [
        Command::Idle { poll_after_s: 300 },
        Command::Update {
            release: 7,
            envelope: &[0x83, 1, 2, 3],
            url: "/api/device/artifacts/7",
            stream: None,
        },
        Command::Revert {
            component: ComponentKind::Model,
        },
        Command::Revert {
            component: ComponentKind::Firmware,
        },
        Command::Reboot,
        // Revision 1.3: a delta from a base, and a compressed stream.
        Command::Update {
            release: 7,
            envelope: &[0x83, 1, 2, 3],
            url: "/api/device/artifacts/7",
            stream: Some(protocol::StreamOffer {
                id: 12,
                len: 3210,
                base_sha256: Some([0xAB; 32]),
            }),
        },
        Command::Update {
            release: 7,
            envelope: &[0x83, 1, 2, 3],
            url: "/api/device/artifacts/7",
            stream: Some(protocol::StreamOffer {
                id: 13,
                len: 99,
                base_sha256: None,
            }),
        },
    ] {
        round_trip(&cmd, &mut [0; 256]);
    }
    round_trip(
        &ChunkRequest {
            release: 7,
            offset: 80,
            len: 1024,
            stream: Some(12),
        },
        &mut [0; 64],
    );
    round_trip(
        &Chunk {
            release: 7,
            offset: 80,
            data: &[1; 100],
            stream: Some(12),
        },
        &mut [0; 256],
    );
    round_trip(
        &CheckIn {
            streams: Some(protocol::STREAM_FDL1),
            ..checkin()
        },
        &mut [0; 512],
    );
    round_trip(
        &ChunkRequest {
            release: 7,
            offset: 4096,
            len: 1024,
            stream: None,
        },
        &mut [0; 64],
    );
    round_trip(
        &Chunk {
            release: 7,
            offset: 4096,
            data: &[9; 1024],
            stream: None,
        },
        &mut [0; 1100],
    );
    let steps = [
        Step::Downloaded,
        Step::Installed,
        Step::Booted,
        Step::Validated(Figures {
            samples: 360,
            accuracy_bp: 5_972,
            p50_us: 5_606,
            p99_us: 5_648,
        }),
        Step::Confirmed,
        Step::Reverted(RevertReason::Accuracy),
        Step::Reverted(RevertReason::NotConfirmed),
        Step::Failed(Failure::Digest),
        Step::Failed(Failure::Manifest(artifact::Error::BadSignature)),
        Step::Failed(Failure::Manifest(artifact::Error::SecurityCounter)),
        Step::Failed(Failure::Other(77)),
    ];
    for (seq, step) in steps.into_iter().enumerate() {
        let r = Report {
            device_id: "n7",
            seq: seq as u32,
            release: 42,
            component: ComponentKind::Model,
            version: Version::new(1, 5, 0),
            step,
        };
        round_trip(&r, &mut [0; 128]);
    }
}

#[test]
fn frames_round_trip_on_a_serial_link() {
    let mut buf = [0u8; 600];
    let frames = [
        DeviceFrame::CheckIn(checkin()),
        DeviceFrame::ChunkRequest(ChunkRequest {
            release: 1,
            offset: 0,
            len: 256,
            stream: None,
        }),
        DeviceFrame::Report(Report {
            device_id: "n1",
            seq: 9,
            release: 1,
            component: ComponentKind::Firmware,
            version: Version::new(2, 0, 0),
            step: Step::Booted,
        }),
    ];
    for f in frames {
        let n = f.encode(&mut buf).unwrap();
        assert_eq!(DeviceFrame::decode(&buf[..n]).unwrap(), f);
    }
    for f in [
        ServerFrame::Command(Command::Reboot),
        ServerFrame::Chunk(Chunk {
            release: 1,
            offset: 256,
            data: b"payload",
            stream: None,
        }),
        ServerFrame::ReportAck { seq: 1_000_000 },
        ServerFrame::CheckInNow,
    ] {
        let n = f.encode(&mut buf).unwrap();
        assert_eq!(ServerFrame::decode(&buf[..n]).unwrap(), f);
    }
    // A server frame is not a device frame.
    let n = ServerFrame::ReportAck { seq: 1 }.encode(&mut buf).unwrap();
    assert!(DeviceFrame::decode(&buf[..n]).is_err());
}

#[test]
fn the_long_poll_wait_is_optional_and_a_wake_frame_tolerates_later_fields() {
    // Revision 1.2's key 9: present round-trips, absent reads as None (a device before 1.2).
    let waiting = to_vec(&checkin());
    assert_eq!(decode::<CheckIn>(&waiting).unwrap().wait_ms, Some(25_000));
    let plain = to_vec(&CheckIn {
        wait_ms: None,
        ..checkin()
    });
    assert_eq!(decode::<CheckIn>(&plain).unwrap().wait_ms, None);
    // The wait is the check-in's last field: the same bytes plus `9: 25000`, one field more.
    assert_eq!(waiting[0], plain[0] + 1);
    assert_eq!(&waiting[1..plain.len()], &plain[1..]);
    assert_eq!(&waiting[plain.len()..], &[0x09, 0x19, 0x61, 0xa8]);
    // Check in now: `[3, {}]`; a later revision's optional field in its map is skipped.
    let mut buf = [0u8; 8];
    let n = ServerFrame::CheckInNow.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x82, 0x03, 0xa0]);
    assert_eq!(
        ServerFrame::decode(&[0x82, 0x03, 0xa1, 0x01, 0x02]).unwrap(),
        ServerFrame::CheckInNow
    );
    assert!(ServerFrame::decode(&[0x82, 0x03, 0xa1, 0x20, 0x02]).is_err());
    assert!(ServerFrame::decode(&[0x82, 0x03]).is_err());
    assert!(ServerFrame::decode(&[0x82, 0x04, 0xa0]).is_err());
    assert_eq!(
        ServerFrame::CheckInNow.encode(&mut [0u8; 2]),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn a_small_buffer_is_an_error_and_every_prefix_is_refused() {
    let c = checkin();
    let full = to_vec(&c);
    for len in 0..full.len() {
        assert_eq!(
            encode(&c, &mut vec![0; len]),
            Err(Error::BufferTooSmall),
            "{len}"
        );
        assert!(
            decode::<CheckIn>(&full[..len]).is_err(),
            "prefix {len} decoded"
        );
    }
}

#[test]
fn unknown_optional_fields_are_skipped_and_critical_ones_refused() {
    let mut bytes = to_vec(&ChunkRequest {
        release: 3,
        offset: 0,
        len: 64,
        stream: None,
    });
    assert_eq!(bytes[0], 0xa4);
    bytes[0] = 0xa5;
    let mut optional = bytes.clone();
    optional.extend_from_slice(&[0x18, 40, 0x82, 0x01, 0x02]); // key 40: [1, 2]
    assert_eq!(
        decode::<ChunkRequest>(&optional).unwrap(),
        ChunkRequest {
            release: 3,
            offset: 0,
            len: 64,
            stream: None,
        }
    );
    // An optional field's value may have indefinite lengths: skipped too.
    let mut indefinite = bytes.clone();
    indefinite.extend_from_slice(&[0x18, 40, 0x9f, 0x01, 0x7f, 0x61, b'a', 0xff, 0xff]); // [_ 1, (_ "a")]
    assert_eq!(
        decode::<ChunkRequest>(&indefinite).unwrap(),
        decode::<ChunkRequest>(&optional).unwrap()
    );
    let mut critical = bytes;
    critical.extend_from_slice(&[0x20, 0x00]); // key -1
    assert_eq!(
        decode::<ChunkRequest>(&critical),
        Err(Error::Decode(artifact::Error::UnknownCriticalField))
    );
}

#[test]
fn a_newer_protocol_version_is_refused_clearly() {
    let mut bytes = to_vec(&Command::Reboot);
    assert_eq!(&bytes[..3], &[0xa2, 0x00, 0x01]);
    bytes[2] = 2;
    assert_eq!(decode::<Command>(&bytes), Err(Error::UnsupportedVersion));
}

#[test]
fn bounds_are_enforced_on_decode() {
    let big = vec![0u8; MAX_CHUNK + 1];
    let bytes = to_vec(&Chunk {
        release: 1,
        offset: 0,
        data: &big,
        stream: None,
    });
    assert_eq!(
        decode::<Chunk>(&bytes),
        Err(Error::Decode(artifact::Error::TooLarge))
    );
    for len in [0, MAX_CHUNK as u32 + 1] {
        let bytes = to_vec(&ChunkRequest {
            release: 1,
            offset: 0,
            len,
            stream: None,
        });
        assert_eq!(
            decode::<ChunkRequest>(&bytes),
            Err(Error::Decode(artifact::Error::TooLarge))
        );
    }
    let env = vec![0u8; artifact::MAX_ENVELOPE_LEN + 1];
    let bytes = to_vec(&Command::Update {
        release: 1,
        envelope: &env,
        url: "/a",
        stream: None,
    });
    assert_eq!(
        decode::<Command>(&bytes),
        Err(Error::Decode(artifact::Error::TooLarge))
    );
    for id in ["", "has space", "<script>", &"x".repeat(MAX_DEVICE_ID + 1)] {
        let bytes = to_vec(&CheckIn {
            device_id: id,
            ..checkin()
        });
        assert!(decode::<CheckIn>(&bytes).is_err(), "{id:?} accepted");
    }
    let bytes = to_vec(&CheckIn {
        update: Some(Progress {
            release: 1,
            offset: 10,
            total: 9,
        }),
        ..checkin()
    });
    assert_eq!(
        decode::<CheckIn>(&bytes),
        Err(Error::Decode(artifact::Error::InvalidValue))
    );
}

#[test]
fn required_fields_are_required() {
    // A bare map with only the version.
    assert_eq!(
        decode::<CheckIn>(&[0xa1, 0x00, 0x01]),
        Err(Error::Decode(artifact::Error::MissingField))
    );
    assert_eq!(
        decode::<Command>(&[0xa1, 0x00, 0x01]),
        Err(Error::Decode(artifact::Error::MissingField))
    );
    assert_eq!(
        decode::<Report>(&[0xa1, 0x00, 0x01]),
        Err(Error::Decode(artifact::Error::MissingField))
    );
    assert_eq!(
        decode::<Chunk>(&[0xa1, 0x00, 0x01]),
        Err(Error::Decode(artifact::Error::MissingField))
    );
    // An update command without its envelope.
    assert_eq!(
        decode::<Command>(&[0xa3, 0x00, 0x01, 0x01, 0x01, 0x03, 0x07]),
        Err(Error::Decode(artifact::Error::MissingField))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode::<CheckIn>(&bytes);
        let _ = decode::<Command>(&bytes);
        let _ = decode::<ChunkRequest>(&bytes);
        let _ = decode::<Chunk>(&bytes);
        let _ = decode::<Report>(&bytes);
        let _ = DeviceFrame::decode(&bytes);
        let _ = ServerFrame::decode(&bytes);
    }

    #[test]
    fn check_ins_round_trip(
        boots in any::<u32>(), inferences in any::<u64>(), offset in 0u32..1000, extra in 0u32..1000,
        acc in 0u16..=10_000, p99 in any::<u32>(), major in any::<u32>(), slot_b in any::<bool>(),
    ) {
        let c = CheckIn {
            firmware: Firmware { version: Version::new(major, 0, 1), status: BootStatus::Reverted },
            model: Some(RunningModel { name: "m", version: Version::new(0, major, 0), slot: if slot_b { ModelSlot::B } else { ModelSlot::A } }),
            update: Some(Progress { release: u64::from(major), offset, total: offset + extra }),
            validation: Some(Figures { samples: 1, accuracy_bp: acc, p50_us: p99 / 2, p99_us: p99 }),
            counters: Counters { boots, inferences, updates: 0, failures: 0, reverts: boots },
            ..checkin()
        };
        let bytes = to_vec(&c);
        prop_assert_eq!(decode::<CheckIn>(&bytes).unwrap(), c);
    }
}

#[test]
fn a_stream_offer_without_its_id_or_with_a_short_digest_is_refused() {
    use minicbor::Encoder;
    // A well-formed offer decodes; one lacking its length (key 1), or whose base digest is
    // 31 bytes, is refused.
    for (offer, ok) in [
        (&[(0u8, 12u64), (1, 99)][..], true),
        (&[(0, 12)][..], false),
        (&[(0, 12), (1, 99), (2, 0)][..], false),
    ] {
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(&mut buf[..]);
        e.map(6).unwrap();
        e.u8(0).unwrap().u8(1).unwrap();
        e.u8(1).unwrap().u8(1).unwrap();
        e.u8(3).unwrap().u64(7).unwrap();
        e.u8(4).unwrap().bytes(&[0x83, 1]).unwrap();
        e.u8(5).unwrap().str("/a").unwrap();
        e.u8(7).unwrap().map(offer.len() as u64).unwrap();
        for &(k, v) in offer {
            e.u8(k).unwrap();
            if k == 2 {
                e.bytes(&[0; 31]).unwrap();
            } else {
                e.u64(v).unwrap();
            }
        }
        let n = 128 - e.writer().len();
        assert_eq!(
            protocol::decode::<Command>(&buf[..n]).is_ok(),
            ok,
            "{offer:?}"
        );
    }
}
