//! Records without a host (issue 16, item 3): the demo OS's `net` build (`demo-os-net`)
//! streams its sealed records over the emulated board's Ethernet, straight to the
//! coordinator's data ingest (`serve --data-tcp`), and `flashgate data tail` shows them. No
//! host tool runs: the board's only network is restricted QEMU user networking with one guest
//! forward, 10.0.2.101:7403 to the ingest's loopback port. Counters survive a reboot: after a
//! power cycle the new records are accepted (a reused counter would be refused as a replay).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use flashgate_coordinator::testing::TestCoordinator;
use flashgate_emulator::{EmulatedBoard, NetworkOptions, StartOptions, TcpForward};
use flashgate_protocol::uart::Request;
use flashgate_station::device_link::DeviceLink;
use flashgate_tests::{firmware_dir, TestBoard};

use crate::{provisioned_board_with_os, test_device_key, PRODUCT_ID};

/// `device-fw/demo-os/src/uplink.rs`: where the OS sends its records.
const INGEST_GUEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 101), 7403);
/// Boot, bring-up, connect and ingest on a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

fn demo_os_net() -> Vec<u8> {
    let path = firmware_dir().join("demo-os-net.bin");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the firmware first: `cargo xtask firmware`",
            path.display()
        )
    })
}

/// Powers the board on (from its saved flash) with the guest forward to `ingest` only.
fn power_on(tb: &mut TestBoard, ingest: SocketAddr) {
    let SocketAddr::V4(host) = ingest else {
        panic!("the ingest listens on IPv4 loopback")
    };
    let options = StartOptions {
        network: Some(NetworkOptions {
            tcp_forwards: vec![TcpForward {
                guest: INGEST_GUEST,
                host,
            }],
            frame_peer: None,
        }),
        ..StartOptions::default()
    };
    let dir = tb.board.dir().to_path_buf();
    tb.board = EmulatedBoard::start(dir, options).unwrap();
    tb.board.resume().unwrap();
}

/// `flashgate data tail` (the CLI binary), as JSON lines.
fn tail(tc: &TestCoordinator, serial: &[u8; 16]) -> Vec<serde_json::Value> {
    let out = Command::new(flashgate_tests::flashgate_binary())
        .args(["--endpoint", &tc.endpoint])
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .env("FLASHGATE_TOKEN", &tc.operator_token)
        .args(["-o", "json", "data", "tail", "-n", "200", "--serial"])
        .arg(hex::encode(serial))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tail: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `tail` until `done` holds.
async fn wait_for_tail(
    tc: &TestCoordinator,
    serial: &[u8; 16],
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = tokio::task::block_in_place(|| tail(tc, serial));
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; tail shows {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn counter(line: &serde_json::Value) -> u64 {
    line["counter"].as_u64().expect("a counter")
}

fn boots(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["body"].as_str().is_some_and(|b| b.starts_with("boot ")))
        .map(counter)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_os_streams_records_over_the_network_and_they_survive_a_reboot() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest = listener.local_addr().unwrap();
    tokio::spawn(flashgate_coordinator::data_stream::serve_tcp(
        tc.data.clone(),
        listener,
    ));
    let (mut tb, _vendor, _fw) = tokio::task::block_in_place(|| {
        provisioned_board_with_os(|v, _| v.sign_os(&demo_os_net(), 5))
    });
    let serial = tb.uid.0;
    tc.register_device(PRODUCT_ID, &serial, &test_device_key(&serial))
        .await
        .unwrap();
    tb.board.power_off().unwrap();

    // First power-on: the boot record arrives with nobody on the UART.
    power_on(&mut tb, ingest);
    let lines = wait_for_tail(&tc, &serial, "the boot record", |l| boots(l).len() == 1).await;
    let first_boot = boots(&lines)[0];

    // Twenty more on request (asked over the UART, carried over the network).
    let uart = tb.board.serial_addr().unwrap();
    let mut link = DeviceLink::connect_tcp(uart, Duration::from_secs(5)).unwrap();
    link.send(&Request::DataEmit { count: 20 }).unwrap();
    let lines = wait_for_tail(&tc, &serial, "20 emitted records", |l| {
        l.iter()
            .filter(|r| r["body"].as_str().is_some_and(|b| b.starts_with("emit ")))
            .count()
            == 20
    })
    .await;
    let counters: Vec<u64> = lines.iter().map(counter).collect();
    assert!(
        counters.windows(2).all(|w| w[1] > w[0]),
        "counters in order, none twice: {counters:?}"
    );
    let before_reboot = *counters.last().unwrap();
    drop(link);

    // A power cycle: the new boot record is accepted, so its counter is past every one used.
    tb.board.power_off().unwrap();
    power_on(&mut tb, ingest);
    let lines = wait_for_tail(&tc, &serial, "the second boot record", |l| {
        boots(l).len() == 2
    })
    .await;
    let second_boot = boots(&lines)[1];
    assert!(
        second_boot > before_reboot && before_reboot > first_boot,
        "boot {first_boot}, last before the reboot {before_reboot}, boot again {second_boot}"
    );
    let stats = tc.data.stats();
    assert!(
        stats.rejected.is_empty() && stats.accepted >= 22,
        "all accepted, nothing refused: {stats:?}"
    );
}
