//! The production backend: etcd v3, one etcd transaction per [`KvStore::commit`] (concurrent
//! commits on disjoint keys may share one: `super::etcd_batch`); leader election through etcd's
//! election API (`super::etcd_election`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, GetOptions};

use super::etcd_batch::Batcher;
use super::etcd_election::EtcdElection;
use super::{Election, Guard, KvStore, Outcome, StoreError, Versioned, Write};

/// Keys live under `namespace` (e.g. `/flashgate/`), so several deployments or test runs can
/// share one etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    namespace: String,
    endpoints: Vec<String>,
    /// Every commit goes through it (`super::etcd_batch`: concurrent ones on disjoint keys
    /// share one etcd transaction).
    batcher: Arc<Batcher>,
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:port`).
    pub async fn connect(endpoints: &[String], namespace: &str) -> Result<Self, StoreError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Self {
            batcher: Arc::new(Batcher::spawn(client.clone(), namespace.to_owned())),
            client,
            namespace: namespace.to_owned(),
            endpoints: endpoints.to_vec(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.namespace, key)
    }
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut kv = self.client.kv_client();
        let response = kv.get(self.key(key), None).await?;
        Ok(response.kvs().first().map(|kv| Versioned {
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let mut kv = self.client.kv_client();
        let response = kv
            .get(self.key(prefix), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut out = Vec::with_capacity(response.kvs().len());
        for item in response.kvs() {
            let key = item
                .key_str()
                .map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?;
            let key = key.strip_prefix(&self.namespace).unwrap_or(key).to_owned();
            out.push((
                key,
                Versioned {
                    value: item.value().to_vec(),
                    revision: item.mod_revision(),
                },
            ));
        }
        Ok(out)
    }

    async fn transact(
        &self,
        guards: Vec<Guard>,
        writes: Vec<Write>,
        read_on_refusal: Vec<String>,
    ) -> Result<Outcome, StoreError> {
        self.batcher.transact(guards, writes, read_on_refusal).await
    }

    fn describe(&self) -> String {
        format!(
            "etcd {} (namespace {})",
            self.endpoints.join(","),
            self.namespace
        )
    }

    fn election(&self, name: &str, candidate: &str, ttl: Duration) -> Box<dyn Election> {
        Box::new(EtcdElection::new(
            self.endpoints.clone(),
            self.key(name),
            candidate,
            ttl,
        ))
    }
}
