//! `flashgate device update`: it needs a board for a real run (tests/e2e/update.rs drives the
//! same flow); here, the refusals that come before any byte reaches a device.

use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_port_is_a_clear_retryable_error() {
    let w = World::start().await;
    let serial = "ab".repeat(16);
    // Nothing listens on port 1: unavailable (3), naming the port.
    let message = w
        .cli
        .fails(
            &[
                "device",
                "update",
                "--port",
                "tcp:127.0.0.1:1",
                "--serial",
                &serial,
            ],
            3,
        )
        .await;
    assert!(message.contains("127.0.0.1:1"), "{message}");
    let message = w
        .cli
        .fails(
            &[
                "device",
                "update",
                "--port",
                "/nonexistent/tty",
                "--serial",
                &serial,
            ],
            3,
        )
        .await;
    assert!(message.contains("/nonexistent/tty"), "{message}");
    // A malformed serial: usage (2), the port is never opened.
    let message = w
        .cli
        .fails(
            &[
                "device",
                "update",
                "--port",
                "tcp:127.0.0.1:1",
                "--serial",
                "12",
            ],
            2,
        )
        .await;
    assert!(message.contains("32 hex characters"), "{message}");
    w.tc.stop().await;
}
