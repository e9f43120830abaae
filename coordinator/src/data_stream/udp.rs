//! Plain UDP ingest: one sealed record per datagram, no reply (a record authenticates itself;
//! refusals are counted, see `GetIngestStats`).
//!
//! The receive loop only reads and queues: records wait in a queue per source address, and each
//! source with records waiting has one task that takes them in batches (up to [`MAX_BATCH`]),
//! verifies and stores them (`super::ingest`, where each source is also rate-limited on its own),
//! at most [`IN_FLIGHT`] sources at a time. So:
//! - the socket is read as fast as datagrams arrive, even while batches wait on the store (done
//!   in the loop, those round trips left the socket unread and the kernel dropped genuine
//!   records with the flood: `tests/tests/e2e/udp_flood.rs`, 2% got through);
//! - a busy source's records pile up into larger batches instead of more transactions, and one
//!   source's batches never race each other for its devices' windows (they used to: concurrent
//!   batches of one device retried their guarded commits and could run out of attempts);
//! - what waits is bounded ([`QUEUED`] records in all, [`PER_SOURCE`] of one source); a record
//!   beyond the bound is dropped and counted (`DataOverloaded`), as is a batch the store did not
//!   take (`DataNotStored`), so every datagram read shows up in the counters;
//! - once the receiver falls behind ([`SHED_ABOVE`] records waiting), a record from a source
//!   none of whose records authenticated lately is dropped unread (`DataOverloaded`): reading
//!   and dropping costs far less than verifying, so the socket keeps being read and the kernel
//!   does not drop genuine records with the flood. A flood cannot earn that standing without a
//!   device key; one that spoofs a genuine device's address shares that source's queue only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_protocol::data_stream::MAX_RECORD_LEN;
use flashgate_protocol::ErrorCode;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::ingest::{DataIngest, MAX_BATCH};
use super::limits::BoundedMap;

/// Sources whose batches are being verified and stored at once.
const IN_FLIGHT: usize = 64;
/// Records read and waiting, all sources together: the bound on what a flood can queue here
/// (at most `MAX_RECORD_LEN` bytes each).
const QUEUED: usize = 16_384;
/// Records of one source waiting: a few batches' worth, so one source cannot fill the queue.
const PER_SOURCE: usize = 4 * MAX_BATCH;
/// Records waiting beyond which only proven sources' records are queued.
const SHED_ABOVE: usize = 512;
/// How long a source that sent a record that authenticated stays proven.
const PROVEN_FOR: Duration = Duration::from_secs(300);
/// Proven sources remembered at once.
const PROVEN_SOURCES: usize = 65_536;

/// Records waiting per source; a source is in the map while its task runs.
struct Waiting {
    by_source: HashMap<IpAddr, Vec<Vec<u8>>>,
    total: usize,
    /// Sources a record of which authenticated lately.
    proven: BoundedMap<IpAddr, ()>,
}

impl Default for Waiting {
    fn default() -> Self {
        Self {
            by_source: HashMap::new(),
            total: 0,
            proven: BoundedMap::new(PROVEN_SOURCES, Some(PROVEN_FOR)),
        }
    }
}

impl Waiting {
    /// Queues `record` of `from`; `Some(true)` when `from` has no task yet (start one), `None`
    /// when the queue is full or sheds `from` (the record is dropped).
    fn push(&mut self, from: IpAddr, record: Vec<u8>) -> Option<bool> {
        if self.total >= QUEUED {
            return None;
        }
        if self.total >= SHED_ABOVE && self.proven.get(&from).is_none() {
            return None;
        }
        let new = !self.by_source.contains_key(&from);
        let queue = self.by_source.entry(from).or_default();
        if queue.len() >= PER_SOURCE {
            return None;
        }
        queue.push(record);
        self.total += 1;
        Some(new)
    }

    /// The next batch of `from`; empty when nothing waits, and then `from`'s task ends (it is
    /// taken out of the map under the same lock, so a record queued later starts a new task).
    fn take(&mut self, from: IpAddr) -> Vec<Vec<u8>> {
        let Some(queue) = self.by_source.get_mut(&from) else {
            return Vec::new();
        };
        if queue.is_empty() {
            self.by_source.remove(&from);
            return Vec::new();
        }
        let rest = queue.split_off(queue.len().min(MAX_BATCH));
        let batch = std::mem::replace(queue, rest);
        self.total -= batch.len();
        batch
    }
}

/// The receive buffer asked of the kernel (it grants at most `net.core.rmem_max`): about
/// 0.4 s of a 10,000 datagram/s flood, so the thread being off its core for a while under load
/// does not make the kernel drop what arrives meanwhile (its 208 KiB default holds ~20 ms).
const RECV_BUFFER: usize = 4 << 20;

/// Runs [`serve_udp`] on a thread of its own with a single-threaded runtime: a flood's records
/// are verified on that one thread, so they take at most one core's share and never the main
/// runtime's workers, where the factory's calls (leases, certificates) run. Store calls still go
/// through `ingest`'s clients. Returns once the thread runs; an error of the receive loop is
/// logged and ends the thread.
pub fn serve_udp_on_own_thread(
    ingest: Arc<DataIngest>,
    socket: std::net::UdpSocket,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&socket);
    if let Err(error) = sock.set_recv_buffer_size(RECV_BUFFER) {
        tracing::warn!(%error, "data UDP ingest keeps the kernel's default receive buffer");
    }
    tracing::debug!(bytes = sock.recv_buffer_size()?, "data UDP receive buffer");
    std::thread::Builder::new()
        .name("data-udp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "data UDP ingest: no runtime; not receiving");
                    return;
                }
            };
            let served = runtime.block_on(async move {
                let socket = UdpSocket::from_std(socket)?;
                serve_udp(ingest, socket).await
            });
            if let Err(error) = served {
                tracing::error!(error = %format!("{error:#}"), "data UDP ingest stopped");
            }
        })?;
    Ok(())
}

/// Receives datagrams until the task is dropped.
pub async fn serve_udp(ingest: Arc<DataIngest>, socket: UdpSocket) -> anyhow::Result<()> {
    tracing::info!(addr = %socket.local_addr()?, "data UDP ingest listening");
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let from = from.ip();
        let queued = waiting
            .lock()
            .expect("waiting lock")
            .push(from, buf[..n].to_vec());
        match queued {
            None => ingest.count_refused(ErrorCode::DataOverloaded, 1),
            Some(false) => {}
            Some(true) => {
                tokio::spawn(drain(
                    ingest.clone(),
                    waiting.clone(),
                    in_flight.clone(),
                    from,
                ));
            }
        }
    }
}

/// Verifies and stores `from`'s waiting records, batch by batch, until none wait.
async fn drain(
    ingest: Arc<DataIngest>,
    waiting: Arc<Mutex<Waiting>>,
    in_flight: Arc<Semaphore>,
    from: IpAddr,
) {
    loop {
        // Taken only once a permit is held: records that arrive meanwhile join this batch.
        let Ok(_permit) = in_flight.acquire().await else {
            return;
        };
        let batch = waiting.lock().expect("waiting lock").take(from);
        if batch.is_empty() {
            return;
        }
        match ingest.ingest_from(Some(from), &batch, "udp").await {
            Ok(verdicts) if verdicts.iter().any(Result::is_ok) => {
                waiting
                    .lock()
                    .expect("waiting lock")
                    .proven
                    .insert(from, ());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, records = batch.len(), "data UDP batch not stored");
                ingest.count_refused(ErrorCode::DataNotStored, batch.len() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_gets_one_task_and_its_records_in_batches_of_at_most_max_batch() {
        let mut w = Waiting::default();
        w.proven.insert(ip(1), ());
        assert_eq!(w.push(ip(1), vec![1]), Some(true));
        for _ in 1..MAX_BATCH + 5 {
            assert_eq!(w.push(ip(1), vec![1]), Some(false));
        }
        assert_eq!(w.take(ip(1)).len(), MAX_BATCH);
        assert_eq!(w.take(ip(1)).len(), 5);
        // Still running (in the map) until a take finds nothing.
        assert_eq!(w.push(ip(1), vec![2]), Some(false));
        assert_eq!(w.take(ip(1)), vec![vec![2]]);
        assert!(w.take(ip(1)).is_empty());
        assert_eq!(
            w.push(ip(1), vec![3]),
            Some(true),
            "a new task after the last ended"
        );
        assert_eq!(w.total, 1);
    }

    #[test]
    fn behind_it_queues_only_proven_sources() {
        let mut w = Waiting::default();
        for _ in 0..SHED_ABOVE {
            assert!(w.push(ip(1), vec![0]).is_some());
        }
        assert_eq!(w.push(ip(2), vec![0]), None, "an unproven source is shed");
        w.proven.insert(ip(3), ());
        assert_eq!(w.push(ip(3), vec![0]), Some(true), "a proven one is not");
        w.take(ip(1));
        assert!(
            w.push(ip(2), vec![0]).is_some(),
            "caught up: every source again"
        );
    }

    #[test]
    fn the_queue_is_bounded_per_source_and_in_all() {
        let mut w = Waiting::default();
        for source in 1..=255 {
            w.proven.insert(ip(source), ());
        }
        for _ in 0..PER_SOURCE {
            assert!(w.push(ip(1), vec![0]).is_some());
        }
        assert_eq!(w.push(ip(1), vec![0]), None, "one source's share is full");
        assert!(
            w.push(ip(2), vec![0]).is_some(),
            "another source still gets in"
        );
        let mut source = 3u8;
        while w.total < QUEUED {
            for _ in 0..PER_SOURCE.min(QUEUED - w.total) {
                assert!(w.push(ip(source), vec![0]).is_some());
            }
            source += 1;
        }
        assert_eq!(w.push(ip(250), vec![0]), None, "all sources' total is full");
        w.take(ip(1));
        assert!(
            w.push(ip(250), vec![0]).is_some(),
            "room again after a batch"
        );
    }
}
