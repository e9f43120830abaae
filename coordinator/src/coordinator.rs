//! One coordinator replica: the flows built over one store, with the secrets they share. This
//! is the composition root — it knows every flow, no flow knows it.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use flashgate_proto::v1;

use crate::catalogue::Catalogue;
use crate::config::CoordinatorConfig;
use crate::data_stream::DataIngest;
use crate::error::Result;
use crate::housekeeping::Housekeeping;
use crate::keys::KekRing;
use crate::provisioning::Provisioning;
use crate::repository::Db;
use crate::rotation::{rewrap_all, RewrapReport};
use crate::rpc::OperatorToken;
use crate::store::KvStore;
use crate::update::Updates;

/// One coordinator replica: the catalogue, provisioning and update flows over one store, with
/// the KEK ring, the lease-signing key and the operators' bearer token they need.
pub struct Coordinator {
    db: Db,
    kek: Arc<KekRing>,
    lease_verifying_key: VerifyingKey,
    operator_token: OperatorToken,
    config: Arc<CoordinatorConfig>,
    catalogue: Catalogue,
    provisioning: Provisioning,
    updates: Updates,
}

impl Coordinator {
    /// A coordinator over `store`. `operator_token` is the bearer token operators present.
    pub fn new(
        store: Arc<dyn KvStore>,
        kek: KekRing,
        signing_key: SigningKey,
        operator_token: &str,
        config: CoordinatorConfig,
    ) -> Self {
        let db = Db::new(store);
        let kek = Arc::new(kek);
        let config = Arc::new(config);
        let lease_verifying_key = signing_key.verifying_key();
        let catalogue = Catalogue::new(db.clone(), kek.clone());
        let provisioning = Provisioning::new(
            db.clone(),
            catalogue.clone(),
            kek.clone(),
            Arc::new(signing_key),
            config.clone(),
        );
        let updates = Updates::new(
            db.clone(),
            catalogue.releases.clone(),
            provisioning.registry.clone(),
            kek.clone(),
        );
        Self {
            db,
            kek,
            lease_verifying_key,
            operator_token: OperatorToken::new(operator_token),
            config,
            catalogue,
            provisioning,
            updates,
        }
    }

    /// Products, releases, orders.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Stations, leases, quotas, the device registry.
    pub fn provisioning(&self) -> &Provisioning {
        &self.provisioning
    }

    /// Update campaigns and their delivery.
    pub fn updates(&self) -> &Updates {
        &self.updates
    }

    /// The data-stream ingest (one per replica: it caches the device directory and keys).
    pub fn data_ingest(&self) -> DataIngest {
        DataIngest::new(self.db.clone(), self.provisioning.registry.clone())
    }

    /// Lease expiry and the replay-cache sweep, run by the elected replica.
    pub fn housekeeping(&self) -> Housekeeping {
        Housekeeping::new(
            self.db.clone(),
            self.provisioning.leases.clone(),
            &self.config,
        )
    }

    /// Re-seals every stored secret under the current KEK (rotation step 3).
    pub async fn rewrap_all(&self) -> Result<RewrapReport> {
        rewrap_all(&self.db, &self.kek).await
    }

    /// The key stations verify leases with.
    pub fn lease_verifying_key(&self) -> VerifyingKey {
        self.lease_verifying_key
    }

    /// The bearer token operator calls must carry.
    pub fn operator_token(&self) -> &OperatorToken {
        &self.operator_token
    }

    /// The tunables this replica was started with.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The raw store (for logs, tools and tests; the flows go through typed records).
    pub fn store(&self) -> &Arc<dyn KvStore> {
        self.db.store()
    }

    pub(crate) fn kek(&self) -> &KekRing {
        &self.kek
    }

    /// What `GetCoordinatorInfo` answers: the lease-verifying key and this build's version.
    pub fn info(&self) -> v1::CoordinatorInfo {
        v1::CoordinatorInfo {
            lease_signing_public_key: self.lease_verifying_key.to_bytes().to_vec(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}
