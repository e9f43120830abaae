//! Data-stream ingest on the embedded store: every refusal reason counted, duplicates in one batch.

use flashgate_protocol::data_stream::{
    epoch_key, seal, Direction, RecordHeader, RecordKind, MAX_RECORD_LEN,
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
    assert_eq!(ingest_one(&tc, tel(0, 205)).await, Ok(()));
    assert_eq!(ingest_one(&tc, tel(2, 0)).await, Ok(()));
    assert_eq!(
        ingest_one(&tc, tel(0, 206)).await,
        Err(ErrorCode::DataStaleEpoch)
    );
    assert_eq!(
        ingest_one(&tc, tel(5, 0)).await,
        Err(ErrorCode::DataStaleEpoch)
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
