//! Leader election on etcd with its own election API (`v3election`): a candidate takes an
//! etcd lease and keeps it alive, `campaign`s with it (etcd answers once every earlier
//! candidate's key is gone), `observe`s the election to notice another leader, and `resign`s
//! (then revokes its lease) when it gives up. A leader that crashes stops renewing: its lease
//! and key expire after the TTL and the next candidate is elected.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, LeaderKey, ObserveStream, ResignOptions};
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;

use super::{Election, Leadership, StoreError};

/// etcd grants leases in whole seconds and raises shorter TTLs to its minimum (about 2 s).
const MIN_TTL_SECS: i64 = 2;

pub(super) struct EtcdElection {
    endpoints: Vec<String>,
    /// The election's key prefix, namespaced like every other key.
    name: String,
    candidate: String,
    ttl_secs: i64,
    /// A client of its own: `campaign` waits as long as another replica leads, which the
    /// store client's per-request timeout would cut short.
    client: OnceCell<Client>,
}

impl EtcdElection {
    pub(super) fn new(
        endpoints: Vec<String>,
        name: String,
        candidate: &str,
        ttl: Duration,
    ) -> Self {
        let ttl_secs = i64::try_from(ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(MIN_TTL_SECS);
        Self {
            endpoints,
            name,
            candidate: candidate.to_owned(),
            ttl_secs,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<Client, StoreError> {
        let client = self
            .client
            .get_or_try_init(|| {
                // Keep-alive pings notice a dead etcd while a campaign waits on a quiet stream.
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_keep_alive(Duration::from_secs(2), Duration::from_secs(5))
                    .with_keep_alive_while_idle(true);
                Client::connect(self.endpoints.clone(), Some(options))
            })
            .await?;
        Ok(client.clone())
    }
}

#[async_trait]
impl Election for EtcdElection {
    async fn campaign(&self) -> Result<Box<dyn Leadership>, StoreError> {
        let client = self.client().await?;
        let mut leases = client.lease_client();
        let lease = leases.grant(self.ttl_secs, None).await?.id();
        let (lost_tx, lost_rx) = oneshot::channel();
        let renew = match leases.keep_alive(lease).await {
            Ok((keeper, responses)) => tokio::spawn(renew(
                keeper,
                responses,
                Duration::from_secs(self.ttl_secs as u64) / 3,
                lost_tx,
            )),
            Err(error) => {
                let _ = leases.revoke(lease).await;
                return Err(error.into());
            }
        };
        let mut seat = Seat {
            client: client.clone(),
            lease,
            renew,
            leader: None,
            released: false,
        };
        let mut election = client.election_client();
        let mut elected = election
            .campaign(self.name.clone(), self.candidate.clone(), lease)
            .await?;
        let leader = elected.take_leader().ok_or_else(|| {
            StoreError::Etcd(Box::new(etcd_client::Error::ElectError(
                "etcd answered a campaign without a leader key".into(),
            )))
        })?;
        seat.leader = Some(leader);
        let observe = election.observe(self.name.clone()).await?;
        Ok(Box::new(EtcdLeadership {
            seat: Some(seat),
            lost: lost_rx,
            observe,
        }))
    }
}

/// Renews `lease` every `period` until a renewal fails or etcd says it expired.
async fn renew(
    mut keeper: etcd_client::LeaseKeeper,
    mut responses: etcd_client::LeaseKeepAliveStream,
    period: Duration,
    lost: oneshot::Sender<String>,
) {
    let reason = loop {
        tokio::time::sleep(period).await;
        if let Err(error) = keeper.keep_alive().await {
            break format!("the leadership lease could not be renewed: {error}");
        }
        match responses.message().await {
            Ok(Some(response)) if response.ttl() > 0 => {}
            Ok(_) => break "the leadership lease expired".to_owned(),
            Err(error) => break format!("the leadership lease could not be renewed: {error}"),
        }
    };
    let _ = lost.send(reason);
}

/// A lease being renewed and, once elected, the leader key held with it.
struct Seat {
    client: Client,
    lease: i64,
    renew: JoinHandle<()>,
    leader: Option<LeaderKey>,
    released: bool,
}

impl Seat {
    async fn give_up(mut self) {
        self.renew.abort();
        if let Some(leader) = self.leader.take() {
            let _ = self
                .client
                .election_client()
                .resign(Some(ResignOptions::new().with_leader(leader)))
                .await;
        }
        let _ = self.client.lease_client().revoke(self.lease).await;
        self.released = true;
    }
}

impl Drop for Seat {
    /// Dropped without [`Seat::give_up`] (a campaign cancelled, a task aborted): stop renewing
    /// and revoke the lease if a runtime is still there, else let it expire.
    fn drop(&mut self) {
        self.renew.abort();
        if self.released {
            return;
        }
        let mut leases = self.client.lease_client();
        let lease = self.lease;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = leases.revoke(lease).await;
            });
        }
    }
}

struct EtcdLeadership {
    seat: Option<Seat>,
    lost: oneshot::Receiver<String>,
    observe: ObserveStream,
}

#[async_trait]
impl Leadership for EtcdLeadership {
    async fn lost(&mut self) -> String {
        let ours = self
            .seat
            .as_ref()
            .and_then(|s| s.leader.as_ref())
            .map(|l| l.key().to_vec())
            .unwrap_or_default();
        loop {
            tokio::select! {
                reason = &mut self.lost => {
                    return reason.unwrap_or_else(|_| "lease renewal stopped".to_owned());
                }
                message = self.observe.message() => match message {
                    Ok(Some(response)) => match response.kv() {
                        Some(kv) if kv.key() == ours.as_slice() => {}
                        Some(kv) => {
                            return format!(
                                "another candidate leads ({})",
                                kv.value_str().unwrap_or("?")
                            );
                        }
                        None => return "the election has no leader".to_owned(),
                    },
                    Ok(None) => return "etcd ended the election watch".to_owned(),
                    Err(error) => return format!("the election watch failed: {error}"),
                },
            }
        }
    }

    async fn resign(mut self: Box<Self>) {
        if let Some(seat) = self.seat.take() {
            seat.give_up().await;
        }
    }
}
