//! Records over TCP (`serve --data-tcp ADDR`): a device with networking streams its sealed
//! records here with no host tool (`device-fw/demo-os/src/uplink.rs`). The bytes are the UART's
//! frames, so one `FrameDecoder` per connection takes them apart; each `DataRecord` frame's
//! payload goes to the same [`DataIngest`] as the gRPC and UDP ones (source `"tcp"`), which
//! verifies, de-duplicates and counts refusals by reason. Other frame types and frames that do
//! not decode are skipped (the decoder resynchronises on the next sync byte).
//!
//! TCP because the emulated board's network (QEMU user networking with `restrict=on`) carries
//! no UDP from the guest; a record authenticates itself, so the port needs no login, and the
//! records of one read are ingested as one batch (at most [`MAX_BATCH`]), rate-limited per
//! source address like UDP's.
//!
//! The same connection carries the down-link (queue-and-reply: the device opened it, so it
//! reaches a device behind NAT). Once a record on it authenticated as a device's, the
//! connection reads that device's down counter (one key, [`super::down`]) every
//! [`QUEUE_POLL`]; when it moved, it reads the queue and writes each message not acked yet as a
//! `DataDown` frame, once per
//! connection; a message written on a connection that broke before its ack is written again on
//! the next one (the device refuses a second copy of one it carried out, and says so).
//!
//! With [`serve_tcp_with_receipts`], a `StatusReceipt` frame from the device on the connection
//! (the running OS answering the coordinator's status request after a network update) is
//! reported through `Updates::report`: verified there under the device key against the
//! challenge the coordinator sent, so the connection adds no trust.

use std::net::SocketAddr;
use std::sync::Arc;

use std::collections::HashSet;
use std::time::Duration;

use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::{FrameDecoder, MsgType, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ingest::{DataIngest, MAX_BATCH};
use crate::ids::{ProductId, Serial};
use crate::update::Updates;
use flashgate_proto::v1;

/// How often a connection whose device is known looks at its queue in the store.
pub const QUEUE_POLL: Duration = Duration::from_millis(250);

/// Connections served at once: anyone may connect (records authenticate themselves), so the
/// port bounds what connections can hold here; one beyond it is closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// Accepts connections until the task is dropped; each one is served in a task of its own.
pub async fn serve_tcp(ingest: Arc<DataIngest>, listener: TcpListener) -> anyhow::Result<()> {
    serve_tcp_with_receipts(ingest, None, listener).await
}

/// [`serve_tcp`], and status receipts on the connections go to `updates`.
pub async fn serve_tcp_with_receipts(
    ingest: Arc<DataIngest>,
    updates: Option<Updates>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "data TCP ingest listening");
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = listener.accept().await?;
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "data TCP connection refused: {MAX_CONNECTIONS} already open");
            drop(stream);
            continue;
        };
        let ingest = ingest.clone();
        let updates = updates.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match serve_connection(&ingest, updates.as_ref(), stream, peer).await {
                Ok(records) => tracing::info!(%peer, records, "data TCP connection ended"),
                Err(error) => {
                    tracing::warn!(%peer, error = %format!("{error:#}"), "data TCP connection failed");
                }
            }
        });
    }
}

/// Serves one connection until it closes; returns how many record frames it carried.
async fn serve_connection(
    ingest: &DataIngest,
    updates: Option<&Updates>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> anyhow::Result<u64> {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut carried = 0u64;
    // The device on this connection: the sender of its first authenticated record.
    let mut device: Option<(ProductId, Serial)> = None;
    // (epoch, counter) of the messages written on this connection.
    let mut written: HashSet<(u32, u32)> = HashSet::new();
    // The device's down counter when its queue was last read on this connection: the queue is
    // read again only once the counter moved (a message was queued, through any replica).
    let mut read_at: Option<(u32, u32)> = None;
    let mut tick = tokio::time::interval(QUEUE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(carried);
                }
                let mut batch = Vec::new();
                let mut receipts = Vec::new();
                for &byte in &buf[..n] {
                    if let Some(Ok(frame)) = decoder.push(byte) {
                        match frame.msg_type() {
                            Ok(MsgType::DataRecord) => batch.push(frame.payload().to_vec()),
                            Ok(MsgType::StatusReceipt) => receipts.push(frame.payload().to_vec()),
                            _ => {}
                        }
                    }
                }
                carried += batch.len() as u64;
                for chunk in batch.chunks(MAX_BATCH) {
                    let (_, senders) = ingest.ingest_senders(Some(peer.ip()), chunk, "tcp").await?;
                    if let (None, Some(first)) = (device, senders.first()) {
                        tracing::info!(%peer, serial = %first.serial, "data TCP connection is the device's");
                        device = Some((first.product_id, first.serial));
                    }
                }
                if let (Some(updates), Some((product_id, serial))) = (updates, device) {
                    for receipt in receipts {
                        report(updates, product_id, serial, receipt).await;
                    }
                }
            }
            _ = tick.tick() => {
                if let Some((_, serial)) = device {
                    let next = ingest.down().next_counter(serial).await?;
                    if next.is_some() && next != read_at {
                        deliver(ingest, &mut stream, serial, &mut written).await?;
                        read_at = next;
                    }
                }
            }
        }
    }
}

/// Reports a status receipt the device sent on its connection (verified by `Updates::report`
/// against the outstanding challenge; one that does not verify is logged and dropped).
async fn report(updates: &Updates, product_id: ProductId, serial: Serial, receipt: Vec<u8>) {
    let req = v1::ReportUpdateRequest {
        product_id: product_id.0,
        serial: serial.0.to_vec(),
        receipt,
        refused_code: 0,
    };
    match updates.report(req).await {
        Ok(status) => {
            tracing::info!(%serial, state = %status.state, os_version = status.os_version, "data TCP: the OS's receipt reported")
        }
        Err(error) => tracing::warn!(%serial, %error, "data TCP: a receipt was not recorded"),
    }
}

/// Writes the device's messages not acked yet and not written on this connection, in counter
/// order, and marks them delivered.
async fn deliver(
    ingest: &DataIngest,
    stream: &mut TcpStream,
    serial: Serial,
    written: &mut HashSet<(u32, u32)>,
) -> anyhow::Result<()> {
    for message in ingest.down().undelivered(serial).await? {
        let m = &message.record;
        if !written.insert((m.epoch, m.counter)) {
            continue;
        }
        let frame = frame_to_vec(&Request::DataDown { message: &m.sealed })
            .map_err(|code| anyhow::anyhow!("down message {}:{}: {code}", m.epoch, m.counter))?;
        stream.write_all(&frame).await?;
        ingest.down().delivered(serial, m.epoch, m.counter).await?;
        tracing::info!(%serial, epoch = m.epoch, counter = m.counter, "down message written");
    }
    Ok(())
}
