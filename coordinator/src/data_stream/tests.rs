//! Data-stream ingest on the embedded store: every refusal reason counted, duplicates in one batch.

use flashgate_protocol::data_stream::{
    epoch_key, seal, seal_compact, CompactHeader, Direction, RecordHeader, RecordKind,
    RecordSealer, EPOCH_LOOKAHEAD, MAX_COMPACT_COUNTER, MAX_RECORD_LEN, OVERHEAD, RESERVE_BLOCK,
};

use flashgate_proto::v1;
use flashgate_protocol::data_stream::{self as data_stream};
use flashgate_protocol::ErrorCode;

use crate::testing::TestCoordinator;

const SERIAL: [u8; 16] = [0xAB; 16];
const KEY: [u8; 32] = [5; 32];

fn rec(epoch: u32, counter: u32, kind: RecordKind, body: &[u8]) -> Vec<u8> {
    let header = RecordHeader {
        device_id: data_stream::device_id(&SERIAL),
        epoch,
        counter,
    };
    let mut out = vec![0u8; MAX_RECORD_LEN];
    let n = seal(
        &epoch_key(&KEY, Direction::Up, epoch),
        &header,
        kind,
        body,
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

fn tel(epoch: u32, counter: u32) -> Vec<u8> {
    rec(
        epoch,
        counter,
        RecordKind::Telemetry,
        format!("c{counter}").as_bytes(),
    )
}

async fn ingest_one(tc: &TestCoordinator, r: Vec<u8>) -> std::result::Result<(), ErrorCode> {
    tc.data.ingest(&[r], "test").await.unwrap().remove(0)
}

#[tokio::test]
async fn replays_forgeries_truncations_and_stale_epochs_are_refused_and_counted() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    assert_eq!(ingest_one(&tc, tel(0, 10)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(0, 10)).await,
        Err(ErrorCode::DataReplay)
    );
    assert_eq!(
        ingest_one(&tc, tel(0, 9)).await,
        Ok(()),
        "reordered within the window"
    );
    assert_eq!(ingest_one(&tc, tel(0, 200)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(0, 100)).await,
        Err(ErrorCode::DataTooOld)
    );
    let mut forged = tel(0, 201);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(ingest_one(&tc, forged).await, Err(ErrorCode::DataForged));
    // The forged counter was not consumed: the genuine record still gets in.
    assert_eq!(ingest_one(&tc, tel(0, 201)).await, Ok(()));
    let truncated = tel(0, 202)[..11].to_vec();
    assert_eq!(
        ingest_one(&tc, truncated).await,
        Err(ErrorCode::DataTruncated)
    );
    let mut other = tel(0, 203);
    other[1] ^= 0xFF;
    assert_eq!(
        ingest_one(&tc, other).await,
        Err(ErrorCode::DataUnknownDevice)
    );
    // Rotation to epoch 1, then epoch 0 stays open (in flight), epoch 2 opens implicitly
    // and retires 0.
    let rotation = rec(0, 204, RecordKind::Rotation, &1u32.to_le_bytes());
    assert_eq!(ingest_one(&tc, rotation).await, Ok(()));
    assert_eq!(ingest_one(&tc, tel(1, 0)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(0, 203)).await,
        Ok(()),
        "sealed before the rotation, in flight"
    );
    assert_eq!(
        ingest_one(&tc, tel(0, 205)).await,
        Err(ErrorCode::DataDiverged),
        "sealed after the rotation that closed epoch 0: a second device"
    );
    assert_eq!(ingest_one(&tc, tel(2, 0)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(0, 206)).await,
        Err(ErrorCode::DataStaleEpoch)
    );
    assert_eq!(
        ingest_one(&tc, tel(2 + EPOCH_LOOKAHEAD + 1, 0)).await,
        Err(ErrorCode::DataStaleEpoch),
        "further ahead than a device can have moved on"
    );

    let stats = tc.data.stats();
    assert_eq!(stats.accepted, 8);
    let count = |c: ErrorCode| stats.rejected.get(&(c as u32)).copied().unwrap_or(0);
    assert_eq!(count(ErrorCode::DataReplay), 1);
    assert_eq!(count(ErrorCode::DataTooOld), 1);
    assert_eq!(count(ErrorCode::DataForged), 1);
    assert_eq!(count(ErrorCode::DataTruncated), 1);
    assert_eq!(count(ErrorCode::DataUnknownDevice), 1);
    assert_eq!(count(ErrorCode::DataStaleEpoch), 2);
    assert_eq!(count(ErrorCode::DataDiverged), 1);

    let stored = tc
        .data
        .query(&v1::QueryRecordsRequest {
            serial: SERIAL.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().any(|r| r.body == b"c201"));
    tc.stop().await;
}

#[tokio::test]
async fn a_batch_with_duplicates_accepts_each_counter_once() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let batch = vec![tel(3, 1), tel(3, 2), tel(3, 1), tel(3, 3)];
    let verdicts = tc.data.ingest(&batch, "test").await.unwrap();
    assert_eq!(
        verdicts,
        vec![Ok(()), Ok(()), Err(ErrorCode::DataReplay), Ok(())]
    );
    tc.stop().await;
}

/// A v2 record of `serial` under `key`.
fn compact_for(
    serial: &[u8; 16],
    key: &[u8; 32],
    epoch: u32,
    counter: u32,
    kind: RecordKind,
    body: &[u8],
) -> Vec<u8> {
    let header = CompactHeader::new(serial, epoch, counter, kind).unwrap();
    let mut out = vec![0u8; MAX_RECORD_LEN];
    let n = seal_compact(
        &epoch_key(key, Direction::Up, epoch),
        &header,
        body,
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

fn v2(epoch: u32, counter: u32) -> Vec<u8> {
    compact_for(
        &SERIAL,
        &KEY,
        epoch,
        counter,
        RecordKind::Telemetry,
        format!("v2 c{counter}").as_bytes(),
    )
}

async fn stored(tc: &TestCoordinator, serial: &[u8; 16]) -> Vec<v1::DataRecord> {
    tc.data
        .query(&v1::QueryRecordsRequest {
            serial: serial.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn compact_records_keep_the_replay_protection_of_v1() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let first = v2(0, 10);
    assert_eq!(first.len(), OVERHEAD + "v2 c10".len());
    assert_eq!(ingest_one(&tc, first.clone()).await, Ok(()));
    assert_eq!(ingest_one(&tc, first).await, Err(ErrorCode::DataReplay));
    assert_eq!(
        ingest_one(&tc, v2(0, 9)).await,
        Ok(()),
        "reordered within the window"
    );
    // One window for both formats: a v1 record of an accepted counter is no replay (other
    // bytes) but a second record sealed with that counter, which one device never makes.
    assert_eq!(
        ingest_one(&tc, tel(0, 9)).await,
        Err(ErrorCode::DataDiverged)
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 5000)).await,
        Ok(()),
        "a counter far ahead"
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 4000)).await,
        Err(ErrorCode::DataTooOld)
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 5000 - 63)).await,
        Ok(()),
        "the oldest counter the window still holds"
    );
    let mut forged = v2(0, 5001);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(ingest_one(&tc, forged).await, Err(ErrorCode::DataForged));
    let mut kind_flipped = v2(0, 5001);
    kind_flipped[0] ^= 0x20;
    assert_eq!(
        ingest_one(&tc, kind_flipped).await,
        Err(ErrorCode::DataForged)
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 5001)).await,
        Ok(()),
        "forgeries used no counter"
    );
    let mut unknown = v2(0, 5002);
    unknown[1] ^= 0xFF;
    assert_eq!(
        ingest_one(&tc, unknown).await,
        Err(ErrorCode::DataUnknownDevice)
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 5002)[..OVERHEAD - 1].to_vec()).await,
        Err(ErrorCode::DataTruncated)
    );

    // The device uses up epoch 0 and moves on by itself (no rotation record); its last record
    // of epoch 0, still in flight, gets in; epoch 0 closes when epoch 2 opens.
    assert_eq!(ingest_one(&tc, v2(1, 0)).await, Ok(()));
    assert_eq!(ingest_one(&tc, v2(0, MAX_COMPACT_COUNTER)).await, Ok(()));
    assert_eq!(ingest_one(&tc, v2(1, 0)).await, Err(ErrorCode::DataReplay));
    let rotation = compact_for(
        &SERIAL,
        &KEY,
        1,
        5,
        RecordKind::Rotation,
        &2u32.to_le_bytes(),
    );
    assert_eq!(ingest_one(&tc, rotation).await, Ok(()));
    assert_eq!(ingest_one(&tc, v2(2, 0)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, v2(1, 2)).await,
        Ok(()),
        "previous epoch, in flight"
    );
    assert_eq!(
        ingest_one(&tc, v2(1, 6)).await,
        Err(ErrorCode::DataDiverged),
        "sealed after its epoch's rotation"
    );
    assert_eq!(
        ingest_one(&tc, v2(0, 7)).await,
        Err(ErrorCode::DataForged),
        "epoch 0 would be read as 32: another key"
    );
    assert_eq!(
        ingest_one(&tc, tel(0, 7)).await,
        Err(ErrorCode::DataStaleEpoch)
    );
    // Whole epochs lost: 29 ahead still opens; the epoch it left stays open for records in
    // flight; one more opens with its low bits wrapped past 31 and retires epoch 2.
    assert_eq!(ingest_one(&tc, v2(2 + 29, 0)).await, Ok(()));
    assert_eq!(ingest_one(&tc, v2(2, 1)).await, Ok(()), "the epoch it left");
    assert_eq!(ingest_one(&tc, v2(32, 0)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(2, 5)).await,
        Err(ErrorCode::DataStaleEpoch)
    );

    let stats = tc.data.stats();
    let count = |c: ErrorCode| stats.rejected.get(&(c as u32)).copied().unwrap_or(0);
    assert_eq!(stats.accepted, 13);
    assert_eq!(count(ErrorCode::DataReplay), 2);
    assert_eq!(count(ErrorCode::DataDiverged), 2);
    assert_eq!(count(ErrorCode::DataTooOld), 1);
    assert_eq!(count(ErrorCode::DataForged), 3);
    assert_eq!(count(ErrorCode::DataUnknownDevice), 1);
    assert_eq!(count(ErrorCode::DataTruncated), 1);
    assert_eq!(count(ErrorCode::DataStaleEpoch), 2);
    let records = stored(&tc, &SERIAL).await;
    assert_eq!(records.len(), 13);
    assert!(records
        .iter()
        .any(|r| (r.epoch, r.counter) == (32, 0) && r.wire_len as usize == OVERHEAD + 5));
    tc.stop().await;
}

#[tokio::test]
async fn a_handle_of_another_product_or_shared_by_two_devices_finds_only_the_sender() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    const OTHER: [u8; 16] = [0xCD; 16];
    const OTHER_KEY: [u8; 32] = [6; 32];
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    tc.register_device(8, &OTHER, &OTHER_KEY).await.unwrap();
    // A record naming the product-8 device, sealed with the product-7 device's key.
    let header = CompactHeader::new(&OTHER, 0, 1, RecordKind::Telemetry).unwrap();
    let mut out = vec![0u8; MAX_RECORD_LEN];
    let n = seal_compact(&epoch_key(&KEY, Direction::Up, 0), &header, b"x", &mut out).unwrap();
    assert_eq!(
        ingest_one(&tc, out[..n].to_vec()).await,
        Err(ErrorCode::DataForged)
    );
    // Neither device's window moved: both genuine records of counter 1 get in.
    assert_eq!(
        ingest_one(
            &tc,
            compact_for(&OTHER, &OTHER_KEY, 0, 1, RecordKind::Telemetry, b"b")
        )
        .await,
        Ok(())
    );
    assert_eq!(ingest_one(&tc, v2(0, 1)).await, Ok(()));
    let other = stored(&tc, &OTHER).await;
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].product_id, 8);

    // Two devices whose serials share a handle (as 2^24 handles make likely in a big fleet):
    // each record is found under the device whose key opens it.
    // Registered after the handle was cached here (as on another replica): found anyway.
    let mut twin = OTHER;
    twin[..4].copy_from_slice(&1_366_925u32.to_le_bytes()); // found by a search over i
    let handle = flashgate_protocol::data_stream::handle(&SERIAL);
    assert_eq!(flashgate_protocol::data_stream::handle(&twin), handle);
    const TWIN_KEY: [u8; 32] = [9; 32];
    tc.register_device(9, &twin, &TWIN_KEY).await.unwrap();
    let from_twin = compact_for(&twin, &TWIN_KEY, 0, 2, RecordKind::Telemetry, b"twin");
    assert_eq!(from_twin[1..4], handle);
    assert_eq!(ingest_one(&tc, from_twin).await, Ok(()));
    assert_eq!(ingest_one(&tc, v2(0, 2)).await, Ok(()));
    assert_eq!(stored(&tc, &twin).await.len(), 1);
    assert_eq!(stored(&tc, &SERIAL).await.len(), 2);
    tc.stop().await;
}

/// The clone evidence on the registered device of product 7, and its "clone evidence" audit
/// entries.
async fn evidence(tc: &TestCoordinator, serial: &[u8; 16]) -> (Vec<String>, usize) {
    let device = tc
        .coordinator
        .provisioning()
        .registry
        .get_device(7, serial)
        .await
        .unwrap();
    let audit = tc.coordinator.audit().list("global", 1000).await.unwrap();
    let entries = audit
        .iter()
        .filter(|e| e.action == "clone evidence")
        .count();
    (device.clone_evidence, entries)
}

/// A copy of a board's flash: the same device key and the same counter journal, so the copy
/// seals its own records with the counters the original uses.
fn two_boards() -> (RecordSealer, RecordSealer) {
    let board = || RecordSealer::new(&KEY, &SERIAL, 0, 0, RESERVE_BLOCK);
    (board(), board())
}

fn seal_next(sealer: &mut RecordSealer, body: &str) -> Vec<u8> {
    let mut out = vec![0u8; MAX_RECORD_LEN];
    let n = sealer
        .seal(RecordKind::Telemetry, body.as_bytes(), &mut out)
        .unwrap();
    out.truncate(n);
    out
}

#[tokio::test]
async fn two_boards_with_one_device_key_are_flagged_once_and_a_replay_is_not() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let (mut original, mut copy) = two_boards();
    let first = seal_next(&mut original, "original 0");
    assert_eq!(ingest_one(&tc, first.clone()).await, Ok(()));
    // The same bytes again (a relay retrying, an attacker replaying): a replay, no evidence.
    assert_eq!(ingest_one(&tc, first).await, Err(ErrorCode::DataReplay));
    assert_eq!(evidence(&tc, &SERIAL).await, (vec![], 0));

    // The copy's record under the same counter: authenticates, differs.
    assert_eq!(
        ingest_one(&tc, seal_next(&mut copy, "copy 0")).await,
        Err(ErrorCode::DataDiverged)
    );
    let (shown, audited) = evidence(&tc, &SERIAL).await;
    assert_eq!((shown.len(), audited), (1, 1), "{shown:?}");
    assert!(
        shown[0].contains("data counter reused with other contents")
            && shown[0].contains("epoch 0, counter 0"),
        "{shown:?}"
    );
    // Both keep sending: every reuse is refused and counted, nothing more is written.
    for i in 1..20 {
        let batch = vec![
            seal_next(&mut original, &format!("original {i}")),
            seal_next(&mut copy, &format!("copy {i}")),
        ];
        let verdicts = tc.data.ingest(&batch, "test").await.unwrap();
        assert_eq!(verdicts, vec![Ok(()), Err(ErrorCode::DataDiverged)]);
    }
    assert_eq!(evidence(&tc, &SERIAL).await.0.len(), 1);
    assert_eq!(evidence(&tc, &SERIAL).await.1, 1);
    let stats = tc.data.stats();
    assert_eq!(
        stats.rejected.get(&(ErrorCode::DataDiverged as u32)),
        Some(&20)
    );
    assert_eq!(
        stats.rejected.get(&(ErrorCode::DataReplay as u32)),
        Some(&1)
    );
    // Only the first record of each counter was stored.
    let bodies: Vec<Vec<u8>> = stored(&tc, &SERIAL)
        .await
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 20);
    assert!(bodies.iter().all(|b| b.starts_with(b"original")));

    // The original rotates; the copy, still in epoch 0, sends on: a fork of the epoch (a
    // signal of its own, written once too).
    let mut out = vec![0u8; MAX_RECORD_LEN];
    let n = original.rotate(&mut out).unwrap();
    assert_eq!(ingest_one(&tc, out[..n].to_vec()).await, Ok(()));
    let _ = seal_next(&mut copy, "copy 20"); // lost
    assert_eq!(
        ingest_one(&tc, seal_next(&mut copy, "copy 21")).await,
        Err(ErrorCode::DataDiverged)
    );
    let (shown, audited) = evidence(&tc, &SERIAL).await;
    assert_eq!((shown.len(), audited), (2, 2), "{shown:?}");
    assert!(
        shown[1].contains("data epoch continued after its rotation"),
        "{shown:?}"
    );
    tc.stop().await;
}

#[tokio::test]
async fn records_of_a_copy_are_flagged_on_a_fresh_replica_too() {
    // The window (and the digests it keeps) live in the store: another replica, or this one
    // after a restart, tells a copy's record from a replay just the same.
    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let (mut original, mut copy) = two_boards();
    assert_eq!(
        ingest_one(&tc, seal_next(&mut original, "original 0")).await,
        Ok(())
    );
    let fresh = tc.coordinator.data_ingest();
    let verdicts = fresh
        .ingest(&[seal_next(&mut copy, "copy 0")], "other replica")
        .await
        .unwrap();
    assert_eq!(verdicts, vec![Err(ErrorCode::DataDiverged)]);
    assert_eq!(evidence(&tc, &SERIAL).await.0.len(), 1);
    tc.stop().await;
}

#[tokio::test]
async fn a_store_from_before_handles_is_backfilled_once_and_then_takes_v2_records() {
    use crate::data_stream::index::{DeviceIdIndex, Handle, HandleEntry};
    use crate::ids::{ProductId, Serial};
    use crate::repository::{Db, Scope, Txn};

    let tc = TestCoordinator::start_embedded().await.unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let db = Db::new(tc.coordinator.store().clone());
    // As a device registered before handles existed: its handle entry is not there.
    let handle = (
        Handle(data_stream::handle(&SERIAL)),
        (ProductId(7), Serial(SERIAL)),
    );
    let entry = db.get::<HandleEntry>(&handle).await.unwrap().unwrap();
    assert!(db.commit(Txn::new().delete(&entry)).await.unwrap());
    let before = tc.coordinator.data_ingest();
    assert_eq!(
        before.ingest(&[v2(0, 1)], "test").await.unwrap(),
        vec![Err(ErrorCode::DataUnknownDevice)]
    );

    assert_eq!(DeviceIdIndex::backfill(&db).await.unwrap(), 1);
    assert_eq!(
        db.list(Scope::<HandleEntry>::all()).await.unwrap().len(),
        1,
        "the handle entry is back"
    );
    let after = tc.coordinator.data_ingest();
    assert_eq!(
        after.ingest(&[v2(0, 1)], "test").await.unwrap(),
        vec![Ok(())]
    );
    assert_eq!(
        DeviceIdIndex::backfill(&db).await.unwrap(),
        0,
        "done once: a restart does not list the registry again"
    );
}

#[tokio::test]
async fn a_source_beyond_its_configured_rate_is_refused_unread_and_another_source_is_not() {
    let tc = TestCoordinator::start_embedded_with(crate::config::CoordinatorConfig {
        data_source_rate: 50,
        ..crate::testing::test_config()
    })
    .await
    .unwrap();
    tc.register_device(7, &SERIAL, &KEY).await.unwrap();
    let (nat, other): (std::net::IpAddr, std::net::IpAddr) =
        ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    // A burst is two seconds' worth: 100 of these 120 get through, the rest are not read.
    let batch: Vec<Vec<u8>> = (1..=120).map(|c| tel(0, c)).collect();
    let verdicts = tc
        .data
        .ingest_from(Some(nat), &batch, "test")
        .await
        .unwrap();
    assert!(verdicts[..100].iter().all(|v| v.is_ok()), "{verdicts:?}");
    assert!(
        verdicts[100..]
            .iter()
            .all(|v| *v == Err(ErrorCode::DataRateLimited)),
        "{verdicts:?}"
    );
    // The refused counters were never read, so they are not spent: sent again from another
    // address, they are accepted.
    let verdicts = tc
        .data
        .ingest_from(Some(other), &batch[100..], "test")
        .await
        .unwrap();
    assert!(verdicts.iter().all(|v| v.is_ok()), "{verdicts:?}");
    assert_eq!(stored(&tc, &SERIAL).await.len(), 120);
    tc.stop().await;
}
