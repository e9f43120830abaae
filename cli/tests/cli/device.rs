//! `flashgate device update`: it needs a board for a real run (tests/e2e/update.rs drives the
//! same flow); here, the refusals that come before any byte reaches a device. `device send` and
//! `device messages` against a real coordinator (the delivery itself: tests/e2e/network_data.rs).

use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_port_is_a_clear_retryable_error() {
    let w = World::start().await;
    let serial = "ab".repeat(16);
    let cases = [
        // Nothing listens on port 1 / no such device: unavailable (3), naming the port.
        ("tcp:127.0.0.1:1", serial.as_str(), 3, "127.0.0.1:1"),
        ("/nonexistent/tty", serial.as_str(), 3, "/nonexistent/tty"),
        // A malformed serial: usage (2), the port is never opened.
        ("tcp:127.0.0.1:1", "12", 2, "32 hex characters"),
    ];
    for (port, serial, exit, said) in cases {
        let args = ["device", "update", "--port", port, "--serial", serial];
        let message = w.cli.fails(&args, exit).await;
        assert!(message.contains(said), "{args:?}: {message}");
    }
    w.tc.stop().await;
}

/// `flashgate device send` and `device messages` as processes: the field role queues a sealed
/// message (state `queued` until the device connects), the viewer may list but not send, an
/// unknown device and an out-of-range interval are refused with their exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_send_queues_for_the_field_role_and_messages_shows_the_delivery_state() {
    use flashgate_coordinator::access::Role;

    use crate::support::Flashgate;

    let w = World::start().await;
    let serial = [0x5a; 16];
    let serial_hex = hex::encode(serial);
    w.tc.register_device(7, &serial, &[9; 32]).await.unwrap();
    let field = w.tc.operator_with_role("field", Role::Field).await.unwrap();
    let viewer =
        w.tc.operator_with_role("viewer", Role::Viewer)
            .await
            .unwrap();
    let as_field = Flashgate::new(&w.tc.endpoint, &w.tc.ca_file, &field);
    let as_viewer = Flashgate::new(&w.tc.endpoint, &w.tc.ca_file, &viewer);

    let sent = as_field
        .json(&["device", "send", &serial_hex, "--text", "hello"])
        .await;
    assert_eq!(sent["counter"], 0, "{sent}");
    assert_eq!(sent["state"], "queued");
    let sent = as_field
        .json(&["device", "send", &serial_hex, "--interval", "5"])
        .await;
    assert_eq!(sent["counter"], 1, "{sent}");
    assert_eq!(sent["content"], "record every 5 s");

    let listed = as_viewer.json(&["device", "messages", &serial_hex]).await;
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("text", "queued"), ("interval", "queued")]);
    assert_eq!(listed[0]["sent_by"], "operator:field");

    // The viewer may not send (5); an unknown device (4); an interval out of range (refused, 7).
    let denied = as_viewer
        .fails(&["device", "send", &serial_hex, "--check-update"], 5)
        .await;
    assert!(denied.contains("field"), "{denied}");
    as_field
        .fails(&["device", "send", &"00".repeat(16), "--text", "x"], 4)
        .await;
    // Out of range: refused before any call (the coordinator refuses it as well).
    let refused = as_field
        .fails(&["device", "send", &serial_hex, "--interval", "0"], 2)
        .await;
    assert!(refused.contains("1..=3600"), "{refused}");
    // One of --text, --interval, --check-update: a usage error (2) otherwise.
    as_field.fails(&["device", "send", &serial_hex], 2).await;
    w.tc.stop().await;
}
