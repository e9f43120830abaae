//! `flashgate device verify --port …`: is the board on this UART genuine?
//!
//! 1. `StartDeviceVerification`: a fresh one-shot challenge from the coordinator;
//! 2. `hello` with that challenge over the UART: the board answers with the serial of its
//!    device record, its chip's unique ID, what its bootloader decided at boot (a refusal such
//!    as `UidMismatch` included: a board that boots nothing still answers on the update path)
//!    and a proof under its device key;
//! 3. `VerifyDevice`: the coordinator judges the answer against the registry (it holds the key)
//!    and returns genuine, unregistered or clone suspected, with its reasons.
//!
//! The tool never sees a key; it relays 32 bytes one way and 84 the other.

use std::time::Duration;

use anyhow::anyhow;
use flashgate_proto::v1;
use flashgate_protocol::hello::CHALLENGE_LEN;

use crate::device_update::Uart;
use crate::grpc::OperatorClient;

/// Asks the coordinator for a challenge, relays it to the board on `port` and returns the
/// coordinator's verdict. `timeout` bounds the board's answer.
pub async fn run(
    client: &mut OperatorClient,
    port: &str,
    timeout: Duration,
) -> anyhow::Result<v1::DeviceVerdict> {
    let mut uart = tokio::task::block_in_place(|| Uart::open(port))?;
    let issued = client
        .start_device_verification(v1::StartDeviceVerificationRequest {})
        .await?
        .into_inner();
    let challenge: [u8; CHALLENGE_LEN] = issued.challenge.as_slice().try_into().map_err(|_| {
        anyhow!(
            "the coordinator's challenge has {} bytes, not {CHALLENGE_LEN}",
            issued.challenge.len()
        )
    })?;
    let reply = tokio::task::block_in_place(|| uart.hello(challenge, timeout))?;
    Ok(client
        .verify_device(v1::VerifyDeviceRequest {
            verification_id: issued.verification_id,
            hello_response: reply.raw.to_vec(),
        })
        .await?
        .into_inner())
}
