//! A station that breaks the protocol on purpose, for the faults no one on the wire can make
//! (they need the session keys): a reordered chunk, a truncated image. Built from public pieces
//! only — the protocol crate's [`StationHandshake`] / [`StationSession`] and the station's
//! sealing-agnostic [`LoaderMailbox`] — so the production session keeps no such hook. It stops
//! at the target's first refusal and returns it.

use std::time::Duration;

use flashgate_protocol::device_record::DeviceConfig;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::provisioning::messages::StationMessage;
use flashgate_protocol::provisioning::station::{StationHandshake, StationSession};
use flashgate_station::probe::Probe;
use flashgate_station::provisioning::{
    CertificateIssuer, LoaderMailbox, OrderPlan, ProvisioningError,
};
use x25519_dalek::StaticSecret;

/// How the station misbehaves while sending the bootloader body.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Sends image chunk `chunk + 1` before chunk `chunk` (both sealed in order).
    SwapChunks {
        /// Which chunk.
        chunk: usize,
    },
    /// Stops the body `bytes_missing` bytes early (rounded up to whole chunks), then commits.
    TruncateImage {
        /// How many bytes to hold back.
        bytes_missing: usize,
    },
}

/// Provisions the target behind `probe` with `plan`, misbehaving as told; returns the error
/// the flow stopped at (`None` if the target accepted everything).
pub fn provision_misbehaving(
    probe: &mut dyn Probe,
    plan: &OrderPlan,
    issuer: &dyn CertificateIssuer,
    how: Misbehaviour,
    timeout: Duration,
) -> Option<ProvisioningError> {
    run(probe, plan, issuer, how, timeout).err()
}

fn run(
    probe: &mut dyn Probe,
    plan: &OrderPlan,
    issuer: &dyn CertificateIssuer,
    how: Misbehaviour,
    timeout: Duration,
) -> Result<(), ProvisioningError> {
    let handshake = StationHandshake::new(
        StaticSecret::random_from_rng(rand::rngs::OsRng),
        [9; 16],
        *plan.loader().digest(),
    );
    let (mut mailbox, hello) = LoaderMailbox::boot(
        probe,
        plan.loader(),
        &handshake.params().to_bytes(),
        timeout,
    )?;
    let mut session = handshake
        .complete(&hello)
        .expect("the real loader's hello completes the handshake");
    let mut send = |session: &mut StationSession, request, msg: &StationMessage<'_>| {
        let frame = session.seal_to_vec(msg).expect("the message fits a frame");
        mailbox.exchange(request, &frame).map(drop)
    };
    let confirm = session.key_confirm();
    send(&mut session, "key confirmation", &confirm)?;
    let serial = session.serial();
    let issued = issuer
        .issue("misbehaving", &serial, &session.loader_public())
        .expect("the test authority certifies the chip");
    let anchors = plan.anchors();
    let config = DeviceConfig {
        serial,
        product_id: plan.product_id(),
        vendor_public: anchors.vendor_public,
        authority_public: anchors.authority_public,
        rollback_floor: plan.rollback_floor(),
        flags: 0,
    };
    send(
        &mut session,
        "device secrets",
        &StationMessage::DeviceSecrets {
            config,
            sealed_device_key: &issued.sealed_device_key,
            certificate: issued.certificate,
        },
    )?;
    let image = plan.bootloader();
    let signed = SignedImageHeader::parse(image).expect("the plan's image parses");
    send(
        &mut session,
        "bootloader header",
        &StationMessage::BeginBootloader {
            signed_header: &signed.to_bytes(),
        },
    )?;
    let chunk = plan.chunk_size();
    let body = &image[SIGNED_HEADER_LEN..];
    let body = match how {
        Misbehaviour::TruncateImage { bytes_missing } => {
            &body[..body.len().saturating_sub(bytes_missing)]
        }
        Misbehaviour::SwapChunks { .. } => body,
    };
    let frames: Vec<(u32, &[u8])> = body
        .chunks(chunk)
        .enumerate()
        .map(|(i, data)| ((i * chunk) as u32, data))
        .collect();
    // Seal in order, deliver out of order: each frame is genuine, only its place is wrong.
    let mut sealed: Vec<Vec<u8>> = frames
        .iter()
        .map(|(offset, data)| {
            session
                .seal_to_vec(&StationMessage::ImageData {
                    offset: *offset,
                    data,
                })
                .expect("a chunk fits a frame")
        })
        .collect();
    if let Misbehaviour::SwapChunks { chunk } = how {
        sealed.swap(chunk, chunk + 1);
    }
    let mut exchange = |frame: &[u8]| mailbox.exchange("image data", frame).map(drop);
    for frame in &sealed {
        exchange(frame)?;
    }
    let commit = session
        .seal_to_vec(&StationMessage::Commit)
        .expect("commit fits a frame");
    exchange(&commit)?;
    Ok(())
}
