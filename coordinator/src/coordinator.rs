//! One coordinator replica: the flows built over one store, with the secrets they share. This
//! is the composition root — it knows every flow, no flow knows it.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use flashgate_proto::v1;

use crate::access::Access;
use crate::audit::AuditLog;
use crate::catalogue::Catalogue;
use crate::config::CoordinatorConfig;
use crate::data_stream::DataIngest;
use crate::device_gateway::{DeviceGateway, GatewayOptions};
use crate::error::Result;
use crate::genuineness::evidence::CloneEvidence;
use crate::genuineness::Genuineness;
use crate::housekeeping::Housekeeping;
use crate::keys::KekRing;
use crate::provisioning::Provisioning;
use crate::repository::Db;
use crate::rotation::{rewrap_all, RewrapReport};
use crate::store::KvStore;
use crate::update::Updates;

/// One coordinator replica: the catalogue, provisioning and update flows over one store, with
/// the KEK ring, the lease-signing key, the audit log and operator access they need.
pub struct Coordinator {
    db: Db,
    kek: Arc<KekRing>,
    lease_verifying_key: VerifyingKey,
    access: Access,
    audit: AuditLog,
    config: Arc<CoordinatorConfig>,
    catalogue: Catalogue,
    provisioning: Provisioning,
    updates: Updates,
    genuineness: Genuineness,
    /// Clone evidence from device traffic (data records, update receipts), shared by both.
    evidence: Arc<CloneEvidence>,
}

impl Coordinator {
    /// A coordinator over `store`. `bootstrap_token` (empty: none) is an admin credential held
    /// in memory only (`serve --operator-token-file`); every other credential is in the store.
    pub fn new(
        store: Arc<dyn KvStore>,
        kek: KekRing,
        signing_key: SigningKey,
        bootstrap_token: &str,
        config: CoordinatorConfig,
    ) -> Self {
        let db = Db::new(store);
        let kek = Arc::new(kek);
        let config = Arc::new(config);
        let lease_verifying_key = signing_key.verifying_key();
        let audit = AuditLog::new(db.clone(), kek.clone());
        let access = Access::new(db.clone(), audit.clone(), Some(bootstrap_token));
        let catalogue = Catalogue::new(db.clone(), kek.clone(), audit.clone());
        let provisioning = Provisioning::new(
            db.clone(),
            catalogue.clone(),
            kek.clone(),
            Arc::new(signing_key),
            config.clone(),
            audit.clone(),
            access.enrolment.clone(),
        );
        let evidence = Arc::new(CloneEvidence::new(db.clone(), audit.clone()));
        let updates = Updates::new(
            db.clone(),
            catalogue.releases.clone(),
            provisioning.registry.clone(),
            kek.clone(),
            audit.clone(),
            evidence.clone(),
        );
        let genuineness = Genuineness::new(
            db.clone(),
            kek.clone(),
            catalogue.products.authority().clone(),
            audit.clone(),
        );
        Self {
            db,
            kek,
            lease_verifying_key,
            access,
            audit,
            config,
            catalogue,
            provisioning,
            updates,
            genuineness,
            evidence,
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

    /// Field verification of devices (genuine, unregistered, clone suspected).
    pub fn genuineness(&self) -> &Genuineness {
        &self.genuineness
    }

    /// Update campaigns and their delivery.
    pub fn updates(&self) -> &Updates {
        &self.updates
    }

    /// A device gateway over this coordinator's update flow (`serve --device-gateway-listen`).
    pub fn device_gateway(&self, options: GatewayOptions) -> DeviceGateway {
        DeviceGateway::new(
            self.updates.clone(),
            crate::data_stream::DownQueue::new(
                self.db.clone(),
                self.provisioning.registry.clone(),
                self.audit.clone(),
            ),
            self.provisioning.registry.clone(),
            options,
        )
    }

    /// The data-stream ingest (one per replica: it caches the device directory and keys).
    pub fn data_ingest(&self) -> DataIngest {
        DataIngest::new(
            self.db.clone(),
            self.provisioning.registry.clone(),
            self.evidence.clone(),
            self.audit.clone(),
            crate::data_stream::IngestLimits::with_source_rate(self.config.data_source_rate),
        )
    }

    /// Brings a store written by an earlier version up to what this one reads (today: the
    /// data-stream handle index, [`crate::data_stream::index::DeviceIdIndex::backfill`]); the
    /// number of devices whose entries were written.
    pub async fn upgrade_store(&self) -> crate::error::Result<usize> {
        crate::data_stream::index::DeviceIdIndex::backfill(&self.db).await
    }

    /// Lease expiry and the replay-cache sweep, run by the elected replica.
    pub fn housekeeping(&self) -> Housekeeping {
        Housekeeping::new(
            self.db.clone(),
            self.provisioning.leases.clone(),
            self.audit.clone(),
            &self.config,
        )
    }

    /// Re-seals every stored secret under the current KEK (rotation step 3).
    pub async fn rewrap_all(&self) -> Result<RewrapReport> {
        rewrap_all(&self.db, &self.kek).await
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Checks every chain of the audit log, with the heads the quota and lease records hold.
    pub async fn verify_audit(&self) -> Result<crate::audit::Verification> {
        use crate::audit::ChainScope;
        use crate::provisioning::{LeaseRecord, QuotaRecord};
        use crate::repository::Scope;
        let mut heads = std::collections::BTreeMap::new();
        for quota in self.db.list(Scope::<QuotaRecord>::all()).await? {
            let order = quota
                .key
                .trim_start_matches(<QuotaRecord as crate::repository::Record>::PREFIX)
                .to_owned();
            heads.insert(
                ChainScope::order(&order).as_str().to_owned(),
                quota.record.audit,
            );
        }
        for lease in self.db.list(Scope::<LeaseRecord>::all()).await? {
            heads.insert(
                ChainScope::lease(&lease.record.lease_id)
                    .as_str()
                    .to_owned(),
                lease.record.audit,
            );
        }
        crate::audit::verify(&self.audit, heads).await
    }

    /// The key stations verify leases with.
    pub fn lease_verifying_key(&self) -> VerifyingKey {
        self.lease_verifying_key
    }

    /// Operator credentials, roles and enrolment tokens.
    pub fn access(&self) -> &Access {
        &self.access
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
            ..Default::default()
        }
    }
}
