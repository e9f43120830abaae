//! `flashgate data relay|tail|query|stats`. The relay reads a device's UART; here the device is
//! a loopback TCP peer that speaks the UART framing and seals records with the device's key, as
//! the firmware does (tests/e2e/data_stream.rs runs the same relay against a real board).

use std::io::Write;
use std::net::TcpListener;

use flashgate_protocol::data_stream::{RecordKind, RecordSealer, MAX_RECORD_LEN, RESERVE_BLOCK};
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::DeviceMessage;

use crate::support::{code, stderr, stdout, table_rows, World, PRODUCT};

const SERIAL: [u8; 16] = [0x5d; 16];
const DEVICE_KEY: [u8; 32] = [0x42; 32];

/// Serves one connection: noise, then `records` as DATA_RECORD frames; keeps the link open
/// until the relay hangs up.
fn fake_device(records: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = format!("tcp:{}", listener.local_addr().unwrap());
    let serve = std::thread::spawn(move || {
        let (mut link, _) = listener.accept().unwrap();
        link.write_all(b"demo-os booting\r\n").unwrap();
        for record in records {
            link.write_all(&frame_to_vec(&DeviceMessage::DataRecord(&record)).unwrap())
                .unwrap();
        }
        // Until the relay closes its end.
        let _ = std::io::Read::read(&mut link, &mut [0u8; 1]);
    });
    (port, serve)
}

fn sealed(bodies: &[&str]) -> Vec<Vec<u8>> {
    // A fresh journal: a board and a copy of its flash both start here.
    let mut sealer = RecordSealer::new(&DEVICE_KEY, &SERIAL, 0, 0, RESERVE_BLOCK);
    bodies
        .iter()
        .map(|body| {
            let mut out = [0u8; MAX_RECORD_LEN];
            let n = sealer
                .seal(RecordKind::Telemetry, body.as_bytes(), &mut out)
                .unwrap();
            out[..n].to_vec()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_records_are_verified_then_queried_tailed_and_counted() {
    let w = World::start().await;
    w.tc.register_device(PRODUCT, &SERIAL, &DEVICE_KEY)
        .await
        .unwrap();
    let mut records = sealed(&["temp 21.5", "temp 21.7"]);
    let mut forged = records[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    records.insert(1, forged);
    // The relay holds no token: ingest needs none (records authenticate themselves).
    let (progress, refusals, port) = relay_all(&w, records).await;
    assert_eq!(progress, "forwarded 3 records, 2 accepted");
    assert!(refusals.contains("refused record"), "{refusals}");

    let serial = hex::encode(SERIAL);
    let queried = w.cli.json(&["data", "query", "--serial", &serial]).await;
    let bodies: Vec<&str> = queried
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["temp 21.5", "temp 21.7"]);
    assert_eq!(queried[0]["kind"], "telemetry");
    assert_eq!(queried[0]["source"], format!("relay {port}").as_str());
    let (header, rows) = table_rows(&w.cli.table(&["data", "query", "--serial", &serial]).await);
    assert_eq!(header, "RECEIVED, EPOCH, COUNTER, KIND, BYTES, BODY");
    assert_eq!(rows[1][1..4], ["0", "1", "telemetry"]);
    assert_eq!(rows[1][5], "temp 21.7");

    // tail: the newest N, one JSON document per line.
    let tail = w
        .cli
        .run(&["data", "tail", "--serial", &serial, "-n", "1", "-o", "json"])
        .await;
    assert_eq!(code(&tail), 0, "{}", stderr(&tail));
    let lines: Vec<serde_json::Value> = stdout(&tail)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["body"], "temp 21.7");
    let (_, rows) = table_rows(&w.cli.table(&["data", "tail", "--serial", &serial]).await);
    assert_eq!(rows.len(), 2);

    // stats: the accepted count and the forgery by its code.
    let stats = w.cli.json(&["data", "stats"]).await;
    assert_eq!(stats["accepted"], 2);
    let forgeries = &stats["rejected"].as_array().unwrap()[0];
    assert_eq!(
        (&forgeries["code"], &forgeries["count"]),
        (&0x0501.into(), &1.into())
    );
    let table = w.cli.table(&["data", "stats"]).await;
    let (headline, rest) = table.split_once('\n').unwrap();
    assert_eq!(headline, "accepted 2");
    let (header, rows) = table_rows(rest);
    assert_eq!(header, "CODE, COUNT, REASON");
    assert_eq!(rows[0][..2], ["0x0501", "1"]);

    // Queries need the operator token; a bad serial is a usage error.
    let anonymous = w.cli.run_anonymous(&["data", "stats"]).await;
    assert_eq!(code(&anonymous), 5);
    w.cli.fails(&["data", "query", "--serial", "12"], 2).await;
    w.tc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_names_a_port_it_cannot_open() {
    let w = World::start().await;
    let message = w
        .cli
        .fails(&["data", "relay", "--port", "tcp:127.0.0.1:1"], 3)
        .await;
    assert!(
        message.contains("cannot open the device UART tcp:127.0.0.1:1"),
        "{message}"
    );
    let message = w
        .cli
        .fails(&["data", "relay", "--port", "/dev/ttyS0"], 2)
        .await;
    assert!(message.contains("tcp:HOST:PORT"), "{message}");
    w.tc.stop().await;
}

/// Forwards `records` from a fake device through `flashgate data relay`; the relay's stdout's
/// last line, its stderr and the device's port.
async fn relay_all(w: &World, records: Vec<Vec<u8>>) -> (String, String, String) {
    let count = records.len().to_string();
    let (port, device) = fake_device(records);
    let relay = w
        .cli
        .run_anonymous(&[
            "data",
            "relay",
            "--port",
            &port,
            "--count",
            &count,
            "--timeout-secs",
            "30",
        ])
        .await;
    assert_eq!(code(&relay), 0, "{}", stderr(&relay));
    device.join().unwrap();
    let last = stdout(&relay).lines().last().unwrap_or_default().to_owned();
    (last, stderr(&relay), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_board_sending_data_is_flagged_on_the_device_and_a_replay_is_not() {
    let w = World::start().await;
    w.tc.register_device(PRODUCT, &SERIAL, &DEVICE_KEY)
        .await
        .unwrap();
    let serial = hex::encode(SERIAL);
    let original = sealed(&["original 0", "original 1"]);
    let (progress, _, _) = relay_all(&w, original.clone()).await;
    assert_eq!(progress, "forwarded 2 records, 2 accepted");

    // The same bytes relayed again: replays, nothing on the device.
    let (progress, refusals, _) = relay_all(&w, original).await;
    assert_eq!(progress, "forwarded 2 records, 0 accepted");
    assert!(refusals.contains("data record is a replay"), "{refusals}");
    let shown = w.cli.json(&["devices", "show", &serial]).await;
    assert_eq!(shown["clone_evidence"], serde_json::json!([]), "{shown}");

    // A board with a copy of the flash: same key, same journal, other records.
    let (progress, refusals, _) = relay_all(&w, sealed(&["copy 0", "copy 1"])).await;
    assert_eq!(progress, "forwarded 2 records, 0 accepted");
    assert!(
        refusals.contains("two devices behind one identity"),
        "{refusals}"
    );
    let shown = w.cli.json(&["devices", "show", &serial]).await;
    let evidence = shown["clone_evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "written once: {shown}");
    assert!(
        evidence[0]
            .as_str()
            .unwrap()
            .contains("data counter reused with other contents"),
        "{shown}"
    );
    let table = w.cli.table(&["devices", "show", &serial]).await;
    assert!(
        table.contains("clone evidence") && table.contains("data counter reused"),
        "{table}"
    );
    // The refusal counter.
    let stats = w.cli.json(&["data", "stats"]).await;
    let diverged: Vec<&serde_json::Value> = stats["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["code"] == 0x050A)
        .collect();
    assert_eq!(diverged.len(), 1, "{stats}");
    assert_eq!(diverged[0]["count"], 2, "{stats}");
    let bodies = w.cli.json(&["data", "query", "--serial", &serial]).await;
    assert_eq!(bodies.as_array().unwrap().len(), 2, "only the original's");
    w.tc.stop().await;
}
