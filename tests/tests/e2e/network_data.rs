//! Records without a host (issue 16, item 3): the demo OS's `net` build (`demo-os-net`)
//! streams its sealed records over the emulated board's Ethernet, straight to the
//! coordinator's data ingest (`serve --data-tcp`), and `flashgate data tail` shows them. No
//! host tool runs: the board's only network is restricted QEMU user networking with one guest
//! forward, 10.0.2.101:7403 to the ingest's loopback port. Counters survive a reboot: after a
//! power cycle the new records are accepted (a reused counter would be refused as a replay).
//!
//! The down-link on the same connection: a message sent with `flashgate device send` is
//! shown by the OS once and acked by a sealed record; a replay of its bytes is refused and
//! counted by the device (injected on the UART), and after a power cycle the coordinator's own
//! re-send of it over the network (as after a lost ack) is refused too; a new message after it
//! is accepted.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use flashgate_coordinator::data_stream::down::DownMessageRecord;
use flashgate_coordinator::data_stream::DeliveryState;
use flashgate_coordinator::ids::Serial;
use flashgate_coordinator::repository::{Db, Scope, Txn};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_emulator::{EmulatedBoard, NetworkOptions, StartOptions, TcpForward};
use flashgate_protocol::uart::{MsgType, Request};
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

/// A coordinator with its data TCP port, and a provisioned board with `demo-os-net` registered
/// with it, powered off: the coordinator, the board, its serial, the port.
async fn on_the_data_port() -> (TestCoordinator, TestBoard, [u8; 16], SocketAddr) {
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
    (tc, tb, serial, ingest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_os_streams_records_over_the_network_and_they_survive_a_reboot() {
    let (tc, mut tb, serial, ingest) = on_the_data_port().await;

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

/// `flashgate device …` (the CLI binary) with `args`, as JSON.
fn device_cli(tc: &TestCoordinator, args: &[&str]) -> serde_json::Value {
    let out = Command::new(flashgate_tests::flashgate_binary())
        .args(["--endpoint", &tc.endpoint])
        .env("FLASHGATE_CA_FILE", &tc.ca_file)
        .env("FLASHGATE_TOKEN", &tc.operator_token)
        .args(["-o", "json", "device"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "device {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("device {args:?}: {e}: {text}"))
}

/// `flashgate device messages SERIAL`, polled until the message `counter` is in `state`.
async fn wait_for_message(
    tc: &TestCoordinator,
    serial: &str,
    counter: u64,
    done: impl Fn(&serde_json::Value) -> bool,
    what: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = tokio::task::block_in_place(|| device_cli(tc, &["messages", serial]));
        let found = list
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["counter"].as_u64() == Some(counter))
            .cloned();
        if let Some(m) = found.filter(&done) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; messages: {list}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn bodies_starting<'a>(lines: &'a [serde_json::Value], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l["body"].as_str())
        .filter(|b| b.starts_with(prefix))
        .collect()
}

/// Reads UART frames until a `DownLog` line containing `needle` (other frames are skipped).
fn wait_for_down_log(link: &mut DeviceLink<std::net::TcpStream>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Ok((msg_type, payload)) = link.receive("down log", Duration::from_secs(5)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&payload).into_owned();
        if msg_type == MsgType::DownLog && text.contains(needle) {
            return text;
        }
    }
    panic!("no down log with {needle:?} on the UART within {WAIT:?}");
}

/// The `uptime_ticks` of each heartbeat record after `after` (an index into `lines`).
fn heartbeat_ticks(lines: &[serde_json::Value]) -> Vec<u64> {
    bodies_starting(lines, "heartbeat ")
        .iter()
        .filter_map(|b| {
            b.split(' ')
                .find_map(|w| w.strip_prefix("uptime_ticks="))
                .and_then(|t| t.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_down_is_received_once_a_replay_is_refused_and_both_directions_survive_a_reboot(
) {
    let (tc, mut tb, serial, ingest) = on_the_data_port().await;
    let serial_hex = hex::encode(serial);
    power_on(&mut tb, ingest);
    let mut uart =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    wait_for_tail(&tc, &serial, "the boot record", |l| boots(l).len() == 1).await;

    // A text message, sent with the CLI: queued, written on the device's own connection,
    // shown on its UART, acked by a sealed record naming counter 0.
    let sent = tokio::task::block_in_place(|| {
        device_cli(
            &tc,
            &["send", &serial_hex, "--text", "hello from the cloud"],
        )
    });
    assert_eq!(sent["counter"], 0, "{sent}");
    let shown =
        tokio::task::block_in_place(|| wait_for_down_log(&mut uart, "hello from the cloud"));
    assert_eq!(shown, "down 0:0 text: hello from the cloud");
    let acked = wait_for_message(&tc, &serial_hex, 0, |m| m["state"] == "acked", "the ack").await;
    assert_eq!(acked["device_refusals"], 0, "{acked}");

    // Its sealed bytes again (a replay, injected on the UART: the window is the device's,
    // whatever link carries a copy): refused, counted by the device, reported up.
    let sealed = tc.data.down().list(Serial(serial)).await.unwrap()[0]
        .record
        .sealed
        .clone();
    uart.send(&Request::DataDown { message: &sealed }).unwrap();
    let refused = tokio::task::block_in_place(|| wait_for_down_log(&mut uart, "refused"));
    assert_eq!(refused, "down 0:0 refused 0x0502 (1 refused since boot)");
    let m = wait_for_message(
        &tc,
        &serial_hex,
        0,
        |m| m["device_refusals"] == 1,
        "the refusal report",
    )
    .await;
    assert_eq!(
        m["state"], "acked",
        "a replay leaves the message acked: {m}"
    );
    assert_eq!(m["last_refusal"], "0x0502");

    // Configuration: a record every second (the ticks between heartbeats show it).
    tokio::task::block_in_place(|| device_cli(&tc, &["send", &serial_hex, "--interval", "1"]));
    wait_for_message(
        &tc,
        &serial_hex,
        1,
        |m| m["state"] == "acked",
        "the interval ack",
    )
    .await;
    let lines = wait_for_tail(&tc, &serial, "heartbeats a second apart", |l| {
        let after = l.iter().position(|r| {
            r["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("down-ack 0:1"))
        });
        after.is_some_and(|i| heartbeat_ticks(&l[i..]).len() >= 3)
    })
    .await;
    let i = lines
        .iter()
        .position(|r| {
            r["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("down-ack 0:1"))
        })
        .unwrap();
    let ticks = heartbeat_ticks(&lines[i..]);
    // 25 MHz SysTick: one second is 25 M ticks (the default interval is 2^26 ≈ 67 M).
    let gap = ticks[2] - ticks[1];
    assert!(
        (20_000_000..35_000_000).contains(&gap),
        "heartbeats {gap} ticks apart after `--interval 1`: {ticks:?}"
    );
    let before_reboot = lines.iter().map(counter).max().unwrap();
    drop(uart);
    // As if message 0's ack had been lost: the coordinator writes it again on the device's next
    // connection, over the network (the same sealed bytes: a replay on the network path).
    let db = Db::new(tc.coordinator.store().clone());
    let stored = db
        .list(Scope::<DownMessageRecord>::under(&Serial(serial)))
        .await
        .unwrap()
        .remove(0);
    let mut lost_ack = stored.record.clone();
    lost_ack.state = DeliveryState::Delivered;
    assert!(db
        .commit(Txn::new().unchanged(&stored).replace(&stored, &lost_ack))
        .await
        .unwrap());

    // A power cycle: records continue past every counter used, the old message is still
    // refused (the window was in flash), a new one is accepted.
    tb.board.power_off().unwrap();
    power_on(&mut tb, ingest);
    let mut uart =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    let lines = wait_for_tail(&tc, &serial, "the second boot record", |l| {
        boots(l).len() == 2
    })
    .await;
    assert!(
        boots(&lines)[1] > before_reboot,
        "up counters continue: {lines:?}"
    );
    // Message 0 again, from the coordinator over the network: refused (the window was in flash).
    let refused = tokio::task::block_in_place(|| wait_for_down_log(&mut uart, "refused"));
    assert_eq!(refused, "down 0:0 refused 0x0502 (1 refused since boot)");
    tokio::task::block_in_place(|| {
        device_cli(&tc, &["send", &serial_hex, "--text", "after the reboot"])
    });
    let shown = tokio::task::block_in_place(|| wait_for_down_log(&mut uart, "after the reboot"));
    assert_eq!(shown, "down 0:2 text: after the reboot");
    wait_for_message(
        &tc,
        &serial_hex,
        2,
        |m| m["state"] == "acked",
        "the ack after the reboot",
    )
    .await;
    let m = wait_for_message(
        &tc,
        &serial_hex,
        0,
        |m| m["device_refusals"] == 2,
        "refusals",
    )
    .await;
    // Written again after a lost ack, it is refused as a replay: the device had it.
    assert_eq!(m["state"], "refused", "{m}");
    assert_eq!(m["last_refusal"], "0x0502", "{m}");
    // Received once: one ack per message, in the records.
    let lines = tokio::task::block_in_place(|| tail(&tc, &serial));
    let acks = bodies_starting(&lines, "down-ack ");
    assert_eq!(
        acks,
        [
            "down-ack 0:0 text",
            "down-ack 0:1 interval",
            "down-ack 0:2 text"
        ],
        "{lines:?}"
    );
    let stats = tc.data.stats();
    assert!(stats.rejected.is_empty(), "no up record refused: {stats:?}");
}
