//! Plain UDP ingest: one sealed record per datagram, no reply (a record authenticates itself;
//! refusals are counted, see `GetIngestStats`). Datagrams waiting in the socket are taken in
//! batches of up to 64 per store commit.

use std::sync::Arc;

use flashgate_protocol::data_stream::MAX_RECORD_LEN;
use tokio::net::UdpSocket;

use super::ingest::DataIngest;

/// Receives datagrams until the task is dropped.
pub async fn serve_udp(ingest: Arc<DataIngest>, socket: UdpSocket) -> anyhow::Result<()> {
    tracing::info!(addr = %socket.local_addr()?, "data UDP ingest listening");
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    loop {
        let (n, _) = socket.recv_from(&mut buf).await?;
        let mut batch = vec![buf[..n].to_vec()];
        while batch.len() < 64 {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => batch.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        if let Err(error) = ingest.ingest(&batch, "udp").await {
            tracing::warn!(%error, records = batch.len(), "data UDP batch not stored");
        }
    }
}
