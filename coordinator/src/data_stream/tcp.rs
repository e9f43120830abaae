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

use std::net::SocketAddr;
use std::sync::Arc;

use flashgate_protocol::uart::{FrameDecoder, MsgType};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::ingest::{DataIngest, MAX_BATCH};

/// Connections served at once: anyone may connect (records authenticate themselves), so the
/// port bounds what connections can hold here; one beyond it is closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// Accepts connections until the task is dropped; each one is served in a task of its own.
pub async fn serve_tcp(ingest: Arc<DataIngest>, listener: TcpListener) -> anyhow::Result<()> {
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
        tokio::spawn(async move {
            let _permit = permit;
            match serve_connection(&ingest, stream, peer).await {
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
    mut stream: TcpStream,
    peer: SocketAddr,
) -> anyhow::Result<u64> {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut carried = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(carried);
        }
        let mut batch = Vec::new();
        for &byte in &buf[..n] {
            if let Some(Ok(frame)) = decoder.push(byte) {
                if frame.msg_type() == Ok(MsgType::DataRecord) {
                    batch.push(frame.payload().to_vec());
                }
            }
        }
        carried += batch.len() as u64;
        for chunk in batch.chunks(MAX_BATCH) {
            ingest.ingest_from(Some(peer.ip()), chunk, "tcp").await?;
        }
    }
}
