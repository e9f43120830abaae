//! Data streams and applications on the emulated board: the demo OS seals telemetry with keys
//! derived from its device key (first record at boot, no round trip), `flashgate data relay`
//! forwards them from the UART to the coordinator, `flashgate data tail` shows them verified;
//! records sent as UDP datagrams are verified the same way, and replays, reorderings beyond the
//! window, forgeries and truncations are refused and counted. (Apps, installed from per-device
//! packages while the OS keeps its state, are `apps.rs`.)

use std::process::Command;
use std::time::Duration;

use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::data_stream::Header;
use flashgate_protocol::uart::{MsgType, OsStatus, Request};
use flashgate_protocol::ErrorCode;
use flashgate_station::device_link::DeviceLink;
use flashgate_tests::{Firmware, TestBoard, Vendor};

use crate::{provisioned_board_with_os, test_device_key};

const WAIT: Duration = Duration::from_secs(20);

/// Provisions a board, installs the demo OS and powers it on halted (UART not connected).
fn board_with_os() -> (TestBoard, Vendor, Firmware) {
    provisioned_board_with_os(|vendor, fw| vendor.sign_os(&fw.demo_os, 5))
}

fn receive_until(
    link: &mut DeviceLink<std::net::TcpStream>,
    want: MsgType,
    records: &mut Vec<Vec<u8>>,
) -> Vec<u8> {
    loop {
        let (ty, payload) = link.receive("frame", WAIT).unwrap();
        match ty {
            t if t == want => return payload,
            MsgType::DataRecord => records.push(payload),
            MsgType::Error if want != MsgType::Error => panic!(
                "device refused: {:?}",
                ErrorCode::from_u32(u32::from_le_bytes(payload[..4].try_into().unwrap()))
            ),
            MsgType::BootBanner => panic!("the device reset (boot banner seen)"),
            _ => {}
        }
    }
}

fn counter(record: &[u8]) -> u32 {
    Header::decode(record).unwrap().0.counter()
}

struct Status {
    next_counter: u32,
}

fn status(link: &mut DeviceLink<std::net::TcpStream>, records: &mut Vec<Vec<u8>>) -> Status {
    link.send(&Request::OsStatus).unwrap();
    let p = receive_until(link, MsgType::OsStatusReply, records);
    let s = OsStatus::read_bytes(&p).expect("a well-formed status");
    Status {
        next_counter: s.next_counter,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_records_reach_data_tail_through_the_relay_and_udp() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let (mut tb, _vendor, _fw) = board_with_os();
    let serial = tb.uid.0;
    tc.register_device(7, &serial, &test_device_key(&serial))
        .await
        .unwrap();
    let uart = tb.board.serial_addr().unwrap();

    // The relay holds the UART before the board runs, so it sees the boot record.
    let mut relay = Command::new(flashgate_tests::flashgate_binary());
    relay
        .args(["--endpoint", &tc.endpoint, "data", "relay", "--port"])
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .arg(format!("tcp:{uart}"))
        .args(["--count", "2", "--timeout-secs", "60"]);
    let relay = tokio::task::spawn_blocking(move || relay.output());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tb.board.resume().unwrap();
    let out = relay.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "relay: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("forwarded 2 records, 2 accepted"),
        "relay: {stdout}"
    );

    let tail = Command::new(flashgate_tests::flashgate_binary())
        .args(["--endpoint", &tc.endpoint])
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .env("FLASHGATE_TOKEN", &tc.operator_token)
        .args([
            "-o",
            "json",
            "data",
            "tail",
            "--serial",
            &hex::encode(serial),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tail.stdout);
    assert!(tail.status.success(), "tail: {text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "tail: {text}");
    assert!(
        lines[0]["body"].as_str().unwrap().starts_with("boot "),
        "{text}"
    );
    assert!(lines[1]["counter"].as_u64() > lines[0]["counter"].as_u64());

    // Now the UDP path, with attacks mixed in. 71 records: 70 sent newest first (6 fall out
    // of the 64-record window), the last one kept back for a forgery and a truncation.
    let mut link = DeviceLink::connect_tcp(uart, Duration::from_secs(5)).unwrap();
    let mut records = Vec::new();
    link.send(&Request::DataEmit { count: 71 }).unwrap();
    let before = status(&mut link, &mut records);
    assert!(records.len() >= 71, "got {} records", records.len());
    let emitted: Vec<Vec<u8>> = records.iter().rev().take(71).rev().cloned().collect();
    assert!(emitted
        .windows(2)
        .all(|w| counter(&w[1]) == counter(&w[0]) + 1));
    assert_eq!(counter(emitted.last().unwrap()) + 1, before.next_counter);

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |r: &[u8]| {
        udp.send_to(r, tc.udp_addr).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    };
    send(&emitted[69]);
    for r in &emitted[..69] {
        send(r);
    }
    send(&emitted[69]); // replay
    let mut forged = emitted[70].clone();
    let n = forged.len();
    forged[n - 20] ^= 0x40;
    send(&forged);
    send(&emitted[70][..14]); // truncated inside the body: no room for a tag
    send(&emitted[70]); // the genuine record still gets in

    let mut client = tc.coordinator_data_client().await;
    let expected_accepted = 2 + 64 + 1;
    let mut stats = v1::IngestStats::default();
    for _ in 0..100 {
        stats = client
            .get_ingest_stats(tc.operator_request(v1::GetIngestStatsRequest {}))
            .await
            .unwrap()
            .into_inner();
        let refused: u64 = stats.rejected.iter().map(|r| r.count).sum();
        if stats.accepted + refused >= expected_accepted + 6 + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |code: ErrorCode| {
        stats
            .rejected
            .iter()
            .find(|r| r.error_code == code as u32)
            .map_or(0, |r| r.count)
    };
    assert_eq!(stats.accepted, expected_accepted, "{stats:?}");
    assert_eq!(count(ErrorCode::DataTooOld), 6, "{stats:?}");
    assert_eq!(count(ErrorCode::DataReplay), 1, "{stats:?}");
    assert_eq!(count(ErrorCode::DataForged), 1, "{stats:?}");
    assert_eq!(count(ErrorCode::DataTruncated), 1, "{stats:?}");

    let stored = client
        .query_records(tc.operator_request(v1::QueryRecordsRequest {
            serial: serial.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len() as u64, expected_accepted);
    tb.board.kill();
    tc.stop().await;
}

/// Boots the board's OS (UART connected first, so the boot record is seen), asks for `emit`
/// records and returns every record the device sent until its status reply, and the status.
fn boot_and_emit(tb: &mut TestBoard, emit: u8) -> (Vec<Vec<u8>>, Status) {
    let mut link =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    tb.board.resume().unwrap();
    link.wait_for_banner(WAIT).unwrap();
    let mut records = Vec::new();
    link.send(&Request::DataEmit { count: emit }).unwrap();
    let status = status(&mut link, &mut records);
    (records, status)
}

#[tokio::test(flavor = "multi_thread")]
async fn data_counter_continues_after_a_clean_power_cycle() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let (mut tb, _vendor, _fw) = board_with_os();
    let serial = tb.uid.0;
    tc.register_device(7, &serial, &test_device_key(&serial))
        .await
        .unwrap();

    let (before, status_before) = boot_and_emit(&mut tb, 5);
    // The boot record and the five asked for (a heartbeat may come in between).
    assert!(before.len() >= 6, "got {} records", before.len());
    assert_eq!(
        counter(before.last().unwrap()) + 1,
        status_before.next_counter
    );
    tb.board.power_off().unwrap();
    tb.board.power_on_again().unwrap();
    let (after, status_after) = boot_and_emit(&mut tb, 5);
    assert!(after.len() >= 6, "got {} records", after.len());
    tb.board.kill();

    // The counters go on past every counter used before the power cycle (the journal's mark),
    // increasing within each boot.
    let max_before = before.iter().map(|r| counter(r)).max().unwrap();
    let min_after = after.iter().map(|r| counter(r)).min().unwrap();
    assert!(
        min_after > max_before,
        "after the power cycle the counter starts at {min_after}, before it reached {max_before}"
    );
    for boot in [&before, &after] {
        assert!(boot.windows(2).all(|w| counter(&w[1]) > counter(&w[0])));
    }
    assert_eq!(
        counter(after.last().unwrap()) + 1,
        status_after.next_counter
    );

    let mut client = tc.coordinator_data_client().await;
    let ingest = |records: &[Vec<u8>]| {
        let request = v1::IngestRecordsRequest {
            records: records.to_vec(),
            source: "power-cycle test".into(),
        };
        let mut client = client.clone();
        async move {
            client
                .ingest_records(request)
                .await
                .unwrap()
                .into_inner()
                .verdicts
        }
    };
    let verdicts = ingest(&before).await;
    assert!(verdicts.iter().all(|v| v.accepted), "{verdicts:?}");
    // Every record after the reboot is accepted: no counter of the first boot was reused.
    let verdicts = ingest(&after).await;
    assert!(verdicts.iter().all(|v| v.accepted), "{verdicts:?}");
    // And none from before the reboot is accepted a second time.
    let verdicts = ingest(&before).await;
    assert!(verdicts.iter().all(|v| !v.accepted), "{verdicts:?}");
    assert!(verdicts.iter().all(|v| {
        v.error_code == ErrorCode::DataReplay as u32 || v.error_code == ErrorCode::DataTooOld as u32
    }));

    let stored = client
        .query_records(tc.operator_request(v1::QueryRecordsRequest {
            serial: serial.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len(), before.len() + after.len());
    tc.stop().await;
}
