//! Group commit for etcd: transactions that arrive while others are in flight, and touch
//! disjoint keys, are sent as one etcd transaction.
//!
//! Each etcd transaction costs etcd a request, a raft entry and an apply whatever its size;
//! sixteen stations each committing their own certificate pay that sixteen times. Merged, the
//! sixteen are one. Merging is exact only when no member's writes touch a key another member
//! guards or writes (then every order of running them alone gives the same result as running
//! them together, and the merged guards are just all of theirs): a request that would break
//! that waits for the next round. A merged transaction that is refused tells nothing about
//! which member's guard failed, so each member is then run alone, as it would have been, and
//! gets its own answer (committed, or refused with its own keys read back).
//!
//! At most [`IN_FLIGHT`] transactions are in flight; a request arriving when none is goes out
//! at once, so a lone caller waits for nothing.

use std::collections::HashSet;
use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Guard, Outcome, StoreError, Versioned, Write};

/// Transactions in flight at once.
const IN_FLIGHT: usize = 2;
/// etcd's default `--max-txn-ops`: compares and operations per transaction, each.
const MAX_OPS: usize = 128;
/// Value bytes a merged transaction carries at most (etcd's default request limit is 1.5 MiB).
const MAX_BYTES: usize = 512 * 1024;

/// One caller's transaction.
struct Request {
    guards: Vec<Guard>,
    writes: Vec<Write>,
    reads: Vec<String>,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

impl Request {
    fn written(&self) -> impl Iterator<Item = &str> {
        self.writes.iter().map(|w| match w {
            Write::Put(key, _) | Write::Delete(key) => key.as_str(),
        })
    }

    fn guarded(&self) -> impl Iterator<Item = &str> {
        self.guards.iter().map(|g| match g {
            Guard::Absent(key) | Guard::Revision(key, _) => key.as_str(),
        })
    }

    fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|w| match w {
                Write::Put(key, value) => key.len() + value.len(),
                Write::Delete(key) => key.len(),
            })
            .sum()
    }
}

/// Members of one merged transaction, and the keys they touch.
#[derive(Default)]
struct Group {
    members: Vec<Request>,
    written: HashSet<String>,
    guarded: HashSet<String>,
    guards: usize,
    writes: usize,
    bytes: usize,
}

impl Group {
    /// Whether `r` can join without changing what any member (or `r`) would see alone.
    fn admits(&self, r: &Request) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.guards + r.guards.len() <= MAX_OPS
            && self.writes + r.writes.len() <= MAX_OPS
            && self.bytes + r.bytes() <= MAX_BYTES
            && r.written()
                .all(|k| !self.written.contains(k) && !self.guarded.contains(k))
            && r.guarded().all(|k| !self.written.contains(k))
    }

    fn add(&mut self, r: Request) {
        self.written.extend(r.written().map(str::to_owned));
        self.guarded.extend(r.guarded().map(str::to_owned));
        self.guards += r.guards.len();
        self.writes += r.writes.len();
        self.bytes += r.bytes();
        self.members.push(r);
    }
}

/// Sends transactions to etcd, merging concurrent ones.
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Request>,
}

#[derive(Clone)]
struct Sender {
    client: Client,
    namespace: String,
}

impl Batcher {
    /// A batcher over `client`, keys under `namespace`; its task runs until the store is dropped.
    pub(super) fn spawn(client: Client, namespace: String) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(Sender { client, namespace }, requests));
        Self { queue }
    }

    /// Commits (or refuses) one transaction, possibly merged with concurrent ones.
    pub(super) async fn transact(
        &self,
        guards: Vec<Guard>,
        writes: Vec<Write>,
        reads: Vec<String>,
    ) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                guards,
                writes,
                reads,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Etcd(Box::new(etcd_client::Error::InvalidArgs(
        "the store's commit task has stopped".into(),
    )))
}

async fn run(sender: Sender, mut requests: mpsc::UnboundedReceiver<Request>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut waiting: Vec<Request> = Vec::new();
    loop {
        if waiting.is_empty() {
            match requests.recv().await {
                Some(r) => waiting.push(r),
                None => return,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while we waited for a slot goes in this round.
        while let Ok(r) = requests.try_recv() {
            waiting.push(r);
        }
        let mut group = Group::default();
        let mut later = Vec::new();
        for r in waiting.drain(..) {
            if group.admits(&r) {
                group.add(r);
            } else {
                later.push(r);
            }
        }
        waiting = later;
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.commit_group(group.members).await;
            drop(permit);
        });
    }
}

impl Sender {
    fn key(&self, key: &str) -> String {
        format!("{}{}", self.namespace, key)
    }

    async fn commit_group(&self, mut members: Vec<Request>) {
        if members.len() == 1 {
            let r = members.remove(0);
            let outcome = self.commit(&r.guards, &r.writes, &r.reads).await;
            let _ = r.reply.send(outcome);
            return;
        }
        let guards: Vec<Guard> = members.iter().flat_map(|r| r.guards.clone()).collect();
        let writes: Vec<Write> = members.iter().flat_map(|r| r.writes.clone()).collect();
        match self.commit(&guards, &writes, &[]).await {
            Ok(Outcome::Committed { revision }) => {
                for r in members {
                    let _ = r.reply.send(Ok(Outcome::Committed { revision }));
                }
            }
            Ok(Outcome::Refused { .. }) => {
                // Which member's guard failed is unknown: each runs alone, as it would have.
                let alone: Vec<_> = members
                    .into_iter()
                    .map(|r| {
                        let sender = self.clone();
                        tokio::spawn(async move {
                            let outcome = sender.commit(&r.guards, &r.writes, &r.reads).await;
                            let _ = r.reply.send(outcome);
                        })
                    })
                    .collect();
                for task in alone {
                    let _ = task.await;
                }
            }
            Err(error) => {
                // Applied or not, as for a lone transaction that failed: each caller is told.
                let message = error.to_string();
                for r in members {
                    let _ = r.reply.send(Err(StoreError::Etcd(Box::new(
                        etcd_client::Error::InvalidArgs(message.clone()),
                    ))));
                }
            }
        }
    }

    /// One etcd transaction; on refusal, `reads` as they are now.
    async fn commit(
        &self,
        guards: &[Guard],
        writes: &[Write],
        reads: &[String],
    ) -> Result<Outcome, StoreError> {
        let compares: Vec<Compare> = guards
            .iter()
            .map(|guard| match guard {
                Guard::Absent(key) => Compare::version(self.key(key), CompareOp::Equal, 0),
                Guard::Revision(key, revision) => {
                    Compare::mod_revision(self.key(key), CompareOp::Equal, *revision)
                }
            })
            .collect();
        let ops: Vec<TxnOp> = writes
            .iter()
            .map(|write| match write {
                Write::Put(key, value) => TxnOp::put(self.key(key), value.clone(), None),
                Write::Delete(key) => TxnOp::delete(self.key(key), None),
            })
            .collect();
        let reads: Vec<TxnOp> = reads
            .iter()
            .map(|key| TxnOp::get(self.key(key), None))
            .collect();
        let mut kv = self.client.kv_client();
        let response = kv
            .txn(Txn::new().when(compares).and_then(ops).or_else(reads))
            .await?;
        if response.succeeded() {
            return Ok(Outcome::Committed {
                revision: response.header().map(|h| h.revision()).unwrap_or(0),
            });
        }
        let current = response
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| Versioned {
                    value: kv.value().to_vec(),
                    revision: kv.mod_revision(),
                }),
                _ => None,
            })
            .collect();
        Ok(Outcome::Refused { current })
    }
}
