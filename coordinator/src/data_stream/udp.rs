//! Plain UDP ingest: one sealed record per datagram, no reply (a record authenticates itself;
//! refusals are counted, see `GetIngestStats`). Datagrams waiting in the socket are taken in
//! batches of up to 64, grouped by source address: each source's records are rate-limited on
//! their own (`super::limits`), so one flooding address cannot crowd out the others.

use std::net::IpAddr;
use std::sync::Arc;

use flashgate_protocol::data_stream::MAX_RECORD_LEN;
use tokio::net::UdpSocket;

use super::ingest::DataIngest;

/// Receives datagrams until the task is dropped.
pub async fn serve_udp(ingest: Arc<DataIngest>, socket: UdpSocket) -> anyhow::Result<()> {
    tracing::info!(addr = %socket.local_addr()?, "data UDP ingest listening");
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let mut batches: Vec<(IpAddr, Vec<Vec<u8>>)> = vec![(from.ip(), vec![buf[..n].to_vec()])];
        for _ in 1..64 {
            let Ok((n, from)) = socket.try_recv_from(&mut buf) else {
                break;
            };
            let record = buf[..n].to_vec();
            match batches.iter_mut().find(|(ip, _)| *ip == from.ip()) {
                Some((_, batch)) => batch.push(record),
                None => batches.push((from.ip(), vec![record])),
            }
        }
        for (from, batch) in batches {
            if let Err(error) = ingest.ingest_from(Some(from), &batch, "udp").await {
                tracing::warn!(%error, records = batch.len(), "data UDP batch not stored");
            }
        }
    }
}
