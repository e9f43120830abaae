extern crate std;

use std::vec::Vec;

use super::*;
use crate::flash::{NorFlash, RamFlash};

const KEY: [u8; 32] = [7; 32];
const SERIAL: Serial = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];

fn record(epoch: u32, counter: u32, body: &[u8]) -> Vec<u8> {
    let header = RecordHeader {
        device_id: device_id(&SERIAL),
        epoch,
        counter,
    };
    let key = epoch_key(&KEY, Direction::Up, epoch);
    let mut out = std::vec![0u8; MAX_RECORD_LEN];
    let n = seal(&key, &header, RecordKind::Telemetry, body, &mut out).unwrap();
    out.truncate(n);
    out
}

fn open(epoch: u32, rec: &[u8]) -> Result<(Opened, Vec<u8>), ErrorCode> {
    let mut buf = rec.to_vec();
    let opened = open_in_place(&epoch_key(&KEY, Direction::Up, epoch), &mut buf)?;
    let body = buf[opened.body.clone()].to_vec();
    Ok((opened, body))
}

#[test]
fn record_matches_checked_in_vector() {
    let rec = record(1, 300, b"temp=21.5");
    assert_eq!(
        hex::encode(&rec),
        include_str!("../../vectors/data_record.hex").trim()
    );
    // 12 header bytes (format, id, epoch 1 = 1 byte, counter 300 = 2 bytes), kind, body, tag.
    assert_eq!(rec.len(), V1_TYPICAL_OVERHEAD + 9);
    let (opened, body) = open(1, &rec).unwrap();
    assert_eq!(body, b"temp=21.5");
    assert_eq!(opened.header.counter(), 300);
    assert_eq!(opened.kind, RecordKind::Telemetry);
}

fn compact(epoch: u32, counter: u32, kind: RecordKind, body: &[u8]) -> Vec<u8> {
    let header = CompactHeader::new(&SERIAL, epoch, counter, kind).unwrap();
    let key = epoch_key(&KEY, Direction::Up, epoch);
    let mut out = std::vec![0u8; MAX_RECORD_LEN];
    let n = seal_compact(&key, &header, body, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn compact_record_matches_checked_in_vector_with_22_bytes_of_overhead() {
    let rec = compact(1, 300, RecordKind::Telemetry, b"temp=21.5");
    // Computed by an independent Python (hashlib, cryptography) implementation of the format.
    assert_eq!(
        hex::encode(&rec),
        include_str!("../../vectors/data_record_v2.hex").trim()
    );
    assert_eq!(rec.len(), OVERHEAD + 9);
    assert_eq!(OVERHEAD, 22);
    let (opened, body) = open(1, &rec).unwrap();
    assert_eq!(body, b"temp=21.5");
    assert_eq!(opened.kind, RecordKind::Telemetry);
    let Header::V2(h) = opened.header else {
        panic!("a v2 header")
    };
    assert_eq!(h.handle, handle(&SERIAL));
    assert_eq!((h.epoch_low, h.counter), (1, 300));
    assert!(opened.header.device().names(&SERIAL));
    assert!(!opened.header.device().names(&[0; 16]));
}

#[test]
fn compact_header_has_one_form_per_header_and_every_flags_byte_decodes_or_is_refused() {
    for flags in 0..=255u8 {
        let bytes = [flags, 1, 2, 3, 0x34, 0x12];
        match Header::decode(&bytes) {
            Ok((Header::V2(h), 6)) => {
                assert_eq!(flags & 0xC0, 0x80, "{flags:#x}");
                // Re-encoding gives the same bytes: no second form of one header.
                assert_eq!(h.get_encoding().unwrap(), bytes);
                assert_eq!(h.counter, 0x1234);
            }
            Ok((Header::V1(_), _)) => panic!("{flags:#x} read as v1 from 6 bytes"),
            Ok(other) => panic!("{flags:#x}: {other:?}"),
            Err(code) => {
                assert_ne!(flags & 0xC0, 0x80, "{flags:#x}");
                // 0x01 is v1, too short here.
                let want = if flags == FORMAT_UP_V1 {
                    ErrorCode::DataTruncated
                } else {
                    ErrorCode::DataMalformed
                };
                assert_eq!(code, want, "{flags:#x}");
            }
        }
    }
    let rotation = CompactHeader::new(&SERIAL, 33, 7, RecordKind::Rotation).unwrap();
    let bytes = rotation.get_encoding().unwrap();
    assert_eq!(bytes[0], 0x80 | 0x20 | 1, "format, rotation bit, 33 mod 32");
    assert_eq!(Header::decode(&bytes), Ok((Header::V2(rotation), 6)));
    for len in 0..6 {
        assert_eq!(
            Header::decode(&bytes[..len]),
            Err(ErrorCode::DataTruncated),
            "{len}"
        );
    }
    assert_eq!(
        CompactHeader::new(&SERIAL, 0, MAX_COMPACT_COUNTER + 1, RecordKind::Telemetry),
        Err(ErrorCode::DataCounterExhausted)
    );
    let bad = CompactHeader {
        epoch_low: 32,
        ..rotation
    };
    assert_eq!(bad.get_encoding(), Err(ErrorCode::DataMalformed));
}

#[test]
fn every_flipped_bit_of_a_compact_record_is_refused() {
    let rec = compact(2, 5, RecordKind::Telemetry, b"hello");
    for i in 0..rec.len() * 8 {
        let mut bad = rec.clone();
        bad[i / 8] ^= 1 << (i % 8);
        // A flipped format bit makes another format (malformed); every other bit fails the tag,
        // including the kind and epoch bits (AAD) and the counter (nonce and AAD).
        let result = open(2, &bad);
        assert!(result.is_err(), "bit {i} flipped was accepted");
    }
    let mut rotation_kind = rec.clone();
    rotation_kind[0] |= 0x20;
    assert_eq!(open(2, &rotation_kind).unwrap_err(), ErrorCode::DataForged);
    // Truncations.
    for len in 0..rec.len() {
        let err = open(2, &rec[..len]).unwrap_err();
        assert!(
            matches!(err, ErrorCode::DataTruncated | ErrorCode::DataForged),
            "len {len}: {err:?}"
        );
    }
    assert_eq!(
        open(2, &rec[..COMPACT_HEADER_LEN + TAG_LEN - 1]).unwrap_err(),
        ErrorCode::DataTruncated
    );
    // An empty telemetry body is a record; a rotation needs its 4-byte epoch.
    let empty = compact(2, 6, RecordKind::Telemetry, b"");
    assert_eq!(empty.len(), OVERHEAD);
    assert_eq!(open(2, &empty).unwrap().1, b"");
    let short_rotation = compact(2, 7, RecordKind::Rotation, b"123");
    assert_eq!(
        open(2, &short_rotation).unwrap_err(),
        ErrorCode::DataMalformed
    );
    // Another epoch with the same low bits is another key.
    assert_eq!(
        open(34, &compact(2, 8, RecordKind::Telemetry, b"x")).unwrap_err(),
        ErrorCode::DataForged
    );
    let mut big = std::vec![0u8; MAX_RECORD_LEN];
    let header = CompactHeader::new(&SERIAL, 0, 1, RecordKind::Telemetry).unwrap();
    assert_eq!(
        seal_compact(&KEY, &header, &[0; MAX_BODY_LEN + 1], &mut big),
        Err(ErrorCode::BadLength)
    );
    assert!(seal_compact(&KEY, &header, &[0; MAX_BODY_LEN], &mut big).is_ok());
}

#[test]
fn epochs_are_reconstructed_from_the_previous_to_thirty_ahead() {
    // No state yet: the device starts at 0, so the low bits are the epoch.
    for low in 0..32u8 {
        assert_eq!(reconstruct_epoch(low, None), Some(u32::from(low)));
    }
    for oldest in [0u32, 1, 2, 31, 32, 33, 1000, u32::MAX - 40] {
        let mut seen = std::collections::BTreeSet::new();
        for low in 0..32u8 {
            let e = reconstruct_epoch(low, Some(oldest)).unwrap();
            assert_eq!(e % 32, u32::from(low));
            assert!((oldest..=oldest + 31).contains(&e), "{oldest}: {e}");
            seen.insert(e);
        }
        assert_eq!(seen.len(), 32, "one epoch per value of the low bits");
        // The usual case: previous = oldest, current = oldest + 1, lookahead from there.
        assert!(seen.contains(&(oldest + 1 + EPOCH_LOOKAHEAD)));
    }
    assert_eq!(reconstruct_epoch(31, Some(u32::MAX)), Some(u32::MAX));
    assert_eq!(
        reconstruct_epoch(0, Some(u32::MAX)),
        None,
        "past the last epoch"
    );
}

#[test]
fn epoch_key_matches_checked_in_vector_and_differs_per_direction_and_epoch() {
    let up1 = epoch_key(&KEY, Direction::Up, 1);
    assert_eq!(
        hex::encode(up1.as_ref()),
        include_str!("../../vectors/data_epoch_key.hex").trim()
    );
    assert_ne!(*up1, *epoch_key(&KEY, Direction::Up, 2));
    assert_ne!(*up1, *epoch_key(&KEY, Direction::Down, 1));
}

#[test]
fn every_flipped_bit_is_refused() {
    let rec = record(0, 5, b"hello");
    let (h, hl) = RecordHeader::decode(&rec).unwrap();
    for i in 0..rec.len() * 8 {
        let mut bad = rec.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let result = open(0, &bad);
        assert!(result.is_err(), "bit {i} flipped was accepted");
        if i / 8 >= hl {
            assert_eq!(result.unwrap_err(), ErrorCode::DataForged, "bit {i}");
        }
    }
    assert_eq!(h.counter, 5);
}

#[test]
fn truncated_records_are_refused_as_truncated_or_forged() {
    let rec = record(0, 5, b"hello");
    for len in 0..rec.len() {
        let err = open(0, &rec[..len]).unwrap_err();
        assert!(
            matches!(err, ErrorCode::DataTruncated | ErrorCode::DataForged),
            "len {len}: {err:?}"
        );
    }
    assert_eq!(open(0, &rec[..10]).unwrap_err(), ErrorCode::DataTruncated);
}

#[test]
fn wrong_key_or_epoch_is_forged() {
    let rec = record(3, 1, b"x");
    assert_eq!(open(4, &rec).unwrap_err(), ErrorCode::DataForged);
}

fn get_varint(bytes: &[u8]) -> Result<(u32, usize), ErrorCode> {
    let mut r = Reader::new(bytes);
    let v = read_varint(&mut r)?;
    Ok((v, bytes.len() - r.remaining()))
}

#[test]
fn varints_are_minimal_and_round_trip() {
    for v in [0u32, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
        let mut buf = [0u8; 5];
        let mut w = Writer::new(&mut buf);
        put_varint(&mut w, v).unwrap();
        let n = w.len();
        assert_eq!(get_varint(&buf[..n]).unwrap(), (v, n));
    }
    assert_eq!(get_varint(&[0x80, 0x00]), Err(ErrorCode::DataMalformed));
    assert_eq!(
        get_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        Err(ErrorCode::DataMalformed)
    );
    assert_eq!(
        get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        Err(ErrorCode::DataMalformed)
    );
    assert_eq!(get_varint(&[0x80]), Err(ErrorCode::DataTruncated));
    let mut short = [0u8; 2];
    assert_eq!(
        put_varint(&mut Writer::new(&mut short), u32::MAX),
        Err(ErrorCode::BadLength)
    );
}

#[test]
fn header_round_trips_and_reports_its_length() {
    let h = RecordHeader {
        device_id: device_id(&SERIAL),
        epoch: 200,
        counter: 70_000,
    };
    let mut bytes = h.get_encoding().unwrap();
    assert_eq!(bytes.len(), 1 + DEVICE_ID_LEN + 2 + 3);
    assert_eq!(RecordHeader::read_bytes(&bytes), Ok(h));
    bytes.extend_from_slice(b"ciphertext");
    assert_eq!(RecordHeader::decode(&bytes), Ok((h, 1 + DEVICE_ID_LEN + 5)));
    assert_eq!(
        RecordHeader::decode(&bytes[..5]),
        Err(ErrorCode::DataTruncated)
    );
}

#[test]
fn replay_window_accepts_each_counter_once_within_the_window() {
    let mut w = ReplayWindow::default();
    w.accept(10).unwrap();
    assert_eq!(w.accept(10), Err(ErrorCode::DataReplay));
    w.accept(12).unwrap();
    w.accept(11).unwrap(); // reordered inside the window
    assert_eq!(w.accept(11), Err(ErrorCode::DataReplay));
    w.accept(100).unwrap();
    assert_eq!(w.check(100 - WINDOW), Err(ErrorCode::DataTooOld));
    w.accept(100 - WINDOW + 1).unwrap();
    assert_eq!(w.accept(12), Err(ErrorCode::DataTooOld));
    w.accept(1000).unwrap(); // a jump beyond the window clears the map
    assert_eq!(w.bitmap, 1);
    w.accept(999).unwrap();
    assert_eq!(w.accept(1000), Err(ErrorCode::DataReplay));
}

#[test]
fn replay_window_never_drops_a_valid_reordering_within_the_window() {
    // Every permutation of a shuffled block of 64 counters is accepted exactly once.
    let mut w = ReplayWindow::default();
    let order: Vec<u32> = (0..64).map(|i| (i * 37) % 64).collect();
    for c in &order {
        w.accept(*c + 1000).unwrap();
    }
    for c in &order {
        assert_eq!(w.accept(*c + 1000), Err(ErrorCode::DataReplay));
    }
}

#[test]
fn sealer_reserves_blocks_and_rotation_is_sealed_under_the_old_epoch() {
    let mut s = RecordSealer::new(&KEY, &SERIAL, 0, 0, 0);
    let mut out = [0u8; MAX_RECORD_LEN];
    let first = CounterState {
        epoch: 0,
        mark: RESERVE_BLOCK,
    };
    assert_eq!(s.needs_reservation(), Some(first));
    assert_eq!(
        s.seal(RecordKind::Telemetry, b"x", &mut out),
        Err(ErrorCode::DataCounterExhausted)
    );
    s.reserved(first);
    let n = s.seal(RecordKind::Telemetry, b"x", &mut out).unwrap();
    assert_eq!(n, OVERHEAD + 1);
    assert_eq!(open(0, &out[..n]).unwrap().0.header.counter(), 0);
    let n = s.rotate(&mut out).unwrap();
    let (opened, body) = open(0, &out[..n]).unwrap();
    assert_eq!(opened.kind, RecordKind::Rotation);
    assert_eq!(body, 1u32.to_le_bytes());
    assert_eq!((s.epoch(), s.next_counter()), (1, 0));
    assert!(s.needs_reservation().is_some());
}

#[test]
fn sealer_moves_to_the_next_epoch_when_the_16_bit_counter_is_used_up() {
    // Resumed from a journal whose mark is just below the end of epoch 4.
    let last = MAX_COMPACT_COUNTER;
    let mut s = RecordSealer::new(&KEY, &SERIAL, 4, last - 1, last - 1);
    let mut out = [0u8; MAX_RECORD_LEN];
    let due = s.needs_reservation().unwrap();
    assert_eq!(
        due,
        CounterState {
            epoch: 4,
            mark: last + 1
        },
        "a block never reaches past the last counter"
    );
    s.reserved(due);
    for c in [last - 1, last] {
        let n = s.seal(RecordKind::Telemetry, b"t", &mut out).unwrap();
        let (opened, _) = open(4, &out[..n]).unwrap();
        assert_eq!(opened.header.counter(), c);
    }
    assert_eq!(
        s.seal(RecordKind::Telemetry, b"t", &mut out),
        Err(ErrorCode::DataCounterExhausted)
    );
    let next = s.needs_reservation().unwrap();
    assert_eq!(
        next,
        CounterState {
            epoch: 5,
            mark: RESERVE_BLOCK
        }
    );
    s.reserved(next);
    assert_eq!((s.epoch(), s.next_counter()), (5, 0));
    let n = s.seal(RecordKind::Telemetry, b"t", &mut out).unwrap();
    assert_eq!(open(5, &out[..n]).unwrap().0.header.counter(), 0);
    // A journal that says epoch 5 is used up resumes in epoch 6.
    let resumed = RecordSealer::new(&KEY, &SERIAL, 5, last + 1, last + 1);
    assert_eq!(resumed.needs_reservation().map(|d| d.epoch), Some(6));
    assert_eq!(
        RecordSealer::new(&KEY, &SERIAL, u32::MAX, last + 1, last + 1).needs_reservation(),
        None
    );
}

#[test]
fn journal_survives_reload_and_page_switches() {
    const BASE: u32 = 0x1000;
    let mut flash = RamFlash::erased(0x4000);
    let mut j = CounterJournal::load(&mut flash, BASE).unwrap();
    assert_eq!(j.state(), CounterState::default());
    let mut mark = 0;
    // Three pages' worth of entries: the journal wraps around both pages.
    for _ in 0..JOURNAL_ENTRIES * 3 + 5 {
        mark += RESERVE_BLOCK;
        j.reserve(&mut flash, 0, mark).unwrap();
        assert_eq!(
            CounterJournal::load(&mut flash, BASE).unwrap().state().mark,
            mark
        );
    }
    j.reserve(&mut flash, 1, RESERVE_BLOCK).unwrap();
    let mut j = CounterJournal::load(&mut flash, BASE).unwrap();
    assert_eq!(
        j.state(),
        CounterState {
            epoch: 1,
            mark: RESERVE_BLOCK
        }
    );
    assert_eq!(
        j.reserve(&mut flash, 0, u32::MAX),
        Err(ErrorCode::DataCounterExhausted)
    );
    let _ = flash.erase_page(0);
}
