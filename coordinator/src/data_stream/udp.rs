//! Plain UDP ingest: one sealed record per datagram, no reply (a record authenticates itself;
//! refusals are counted, see `GetIngestStats`). Datagrams waiting in the socket are taken in
//! batches of up to 64, grouped by source address: each source's records are rate-limited on
//! their own (`super::limits`), so one flooding address cannot crowd out the others.
//!
//! The receive loop only reads and dispatches: each source's batch is verified and stored in a
//! task of its own, at most [`IN_FLIGHT`] at a time. Verifying is cheap, but an accepted record
//! costs a store transaction and an unknown id a store read; done in the loop, those round
//! trips left the socket unread and the kernel dropped genuine records with the flood
//! (`tests/tests/e2e/udp_flood.rs`: 2% of genuine records got through a 10,000/s flood).
//! Concurrent batches of one device are safe: each commits guarded on the window it read
//! (`ingest`'s CAS retry), and the replay window takes records out of order.

use std::net::IpAddr;
use std::sync::Arc;

use flashgate_protocol::data_stream::MAX_RECORD_LEN;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::ingest::DataIngest;

/// Source batches being verified and stored at once. When all are busy the loop waits, the
/// socket buffer fills and the kernel drops what does not fit: the bound on the work a flood
/// can queue in this process.
const IN_FLIGHT: usize = 64;

/// Receives datagrams until the task is dropped.
pub async fn serve_udp(ingest: Arc<DataIngest>, socket: UdpSocket) -> anyhow::Result<()> {
    tracing::info!(addr = %socket.local_addr()?, "data UDP ingest listening");
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
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
            let permit = in_flight.clone().acquire_owned().await?;
            let ingest = ingest.clone();
            tokio::spawn(async move {
                if let Err(error) = ingest.ingest_from(Some(from), &batch, "udp").await {
                    tracing::warn!(%error, records = batch.len(), "data UDP batch not stored");
                }
                drop(permit);
            });
        }
    }
}
