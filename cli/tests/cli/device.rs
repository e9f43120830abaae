//! `flashgate device update`: it needs a board for a real run (tests/e2e/update.rs drives the
//! same flow); here, the refusals that come before any byte reaches a device.

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
