//! Start an in-process coordinator on a loopback port, for end-to-end tests (the station
//! worker's included). It serves TLS like a real one: a fresh CA and server certificate for
//! `127.0.0.1`/`localhost` per coordinator ([`TestCoordinator::ca_pem`], written to
//! [`TestCoordinator::ca_file`] for binaries); station clients present their identity
//! certificate ([`TestCoordinator::station_client_for`]). Tests of plain text say so with
//! [`TestCoordinator::start_insecure_plaintext`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let coordinator = flashgate_coordinator::testing::TestCoordinator::start_embedded().await?;
//! let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
//! let mut stations = coordinator.station_client_for(&key).await?;
//! // … enrol with flashgate_proto::station_auth::StationSigner::new(key), then:
//! coordinator.approve(&"<station id>".to_string()).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_proto::transport::{endpoint, ClientTls, Security};
use flashgate_proto::v1::{
    self, operator_service_client::OperatorServiceClient,
    station_service_client::StationServiceClient,
};
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::config::CoordinatorConfig;
use crate::coordinator::Coordinator;
use crate::data_stream::DataIngest;
use crate::keys::{Kek, KekRing};
use crate::server::Transport;
use crate::store::{embedded::EmbeddedStore, KvStore};

/// A running coordinator; stops when dropped or on [`TestCoordinator::stop`].
pub struct TestCoordinator {
    /// The gRPC address it listens on (loopback, a free port).
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT` (`http://` when started with plain text).
    pub endpoint: String,
    /// The CA its server certificate is signed by (PEM); empty for plain text.
    pub ca_pem: String,
    /// The same CA in a file (for binaries: `--ca-file`).
    pub ca_file: PathBuf,
    /// The bearer token of its bootstrap admin.
    pub operator_token: String,
    /// The coordinator itself, for checks that look past the API.
    pub coordinator: Arc<Coordinator>,
    /// The data ingest shared by gRPC and UDP.
    pub data: Arc<DataIngest>,
    /// Loopback UDP port for sealed data records.
    pub udp_addr: SocketAddr,
    transport: Transport,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tls_dir: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
}

/// Test settings: short sweep interval, otherwise the defaults.
pub fn test_config() -> CoordinatorConfig {
    CoordinatorConfig {
        sweep_interval: Duration::from_millis(200),
        ..CoordinatorConfig::default()
    }
}

impl TestCoordinator {
    /// Embedded store in a fresh temporary directory, random KEK and signing key.
    pub async fn start_embedded() -> anyhow::Result<Self> {
        Self::start_embedded_with(test_config()).await
    }

    /// Embedded store in a fresh temporary directory, random KEK and signing key, `config`.
    pub async fn start_embedded_with(config: CoordinatorConfig) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(EmbeddedStore::open(dir.path())?);
        let mut this = Self::start(
            store,
            config,
            SigningKey::generate(&mut OsRng),
            Kek::generate(),
        )
        .await?;
        this._dir = Some(dir);
        Ok(this)
    }

    /// Plain text (`--insecure-plaintext`): only for the tests of that mode. Embedded store.
    pub async fn start_insecure_plaintext() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(EmbeddedStore::open(dir.path())?);
        let config = CoordinatorConfig {
            station_mtls: false,
            ..test_config()
        };
        let mut this = Self::start_with_transport(
            store,
            config,
            SigningKey::generate(&mut OsRng),
            Kek::generate(),
            false,
        )
        .await?;
        this._dir = Some(dir);
        Ok(this)
    }

    /// Any store, given keys, plain text (`--insecure-plaintext`): for the tests and benches
    /// that measure or exercise that mode only.
    pub async fn start_insecure_plaintext_on(
        store: Arc<dyn KvStore>,
        config: CoordinatorConfig,
        signing_key: SigningKey,
        kek: Kek,
    ) -> anyhow::Result<Self> {
        let config = CoordinatorConfig {
            station_mtls: false,
            ..config
        };
        Self::start_with_transport(store, config, signing_key, kek, false).await
    }

    /// Any store, given keys; TLS.
    pub async fn start(
        store: Arc<dyn KvStore>,
        config: CoordinatorConfig,
        signing_key: SigningKey,
        kek: Kek,
    ) -> anyhow::Result<Self> {
        Self::start_with_transport(store, config, signing_key, kek, true).await
    }

    async fn start_with_transport(
        store: Arc<dyn KvStore>,
        config: CoordinatorConfig,
        signing_key: SigningKey,
        kek: Kek,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let tls_dir = tempfile::tempdir()?;
        let ca_file = tls_dir.path().join("ca.pem");
        let (transport, ca_pem) = if tls {
            let set = crate::tls::init(
                tls_dir.path(),
                &["127.0.0.1".to_owned(), "localhost".to_owned()],
                1,
            )?;
            let server = crate::tls::ServerTls::from_pem(
                set.server_pem.as_bytes(),
                set.server_key_pem.as_bytes(),
            )?;
            (Transport::Tls(server), set.ca_pem)
        } else {
            (Transport::InsecurePlaintext, String::new())
        };
        let operator_token = "test-operator-token".to_owned();
        let coordinator = Arc::new(Coordinator::new(
            store,
            KekRing::new(kek, vec![]),
            signing_key,
            &operator_token,
            config,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let data = Arc::new(coordinator.data_ingest());
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let udp_addr = udp.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let udp_task = tokio::spawn(crate::data_stream::serve_udp(data.clone(), udp));
        let task = tokio::spawn(crate::server::serve_with_data(
            coordinator.clone(),
            data.clone(),
            listener,
            transport.clone(),
            async move {
                let _ = rx.await;
                udp_task.abort();
            },
        ));
        let scheme = if tls { "https" } else { "http" };
        Ok(Self {
            addr,
            endpoint: format!("{scheme}://{addr}"),
            ca_pem,
            ca_file,
            operator_token,
            coordinator,
            data,
            udp_addr,
            transport,
            shutdown: Some(tx),
            task: Some(task),
            _tls_dir: tls_dir,
            _dir: None,
        })
    }

    /// What its port speaks (its server certificate, or plain text): for serving the console
    /// beside it as `serve --console-listen` does.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// How a client reaches it: its CA, or plain text.
    pub fn security(&self) -> Security {
        if self.ca_pem.is_empty() {
            Security::InsecurePlaintext
        } else {
            Security::Tls(ClientTls::new(self.ca_pem.clone()))
        }
    }

    /// A channel to it (TLS, no client certificate: an operator's).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(endpoint(&self.endpoint, &self.security())?
            .connect()
            .await?)
    }

    /// A channel presenting the station identity certificate of `key` (mutual TLS).
    pub async fn station_channel(&self, key: &SigningKey) -> anyhow::Result<Channel> {
        let security = match self.security() {
            Security::Tls(tls) => Security::Tls(tls.with_station_key(key)?),
            plain => plain,
        };
        Ok(endpoint(&self.endpoint, &security)?.connect().await?)
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// A station-service client connected as the station whose identity key is `key`
    /// (requests still need signing with it).
    pub async fn station_client_for(
        &self,
        key: &SigningKey,
    ) -> anyhow::Result<StationServiceClient<Channel>> {
        Ok(StationServiceClient::new(self.station_channel(key).await?))
    }

    /// An operator-service client connected to it, taking the largest operator messages.
    pub async fn operator_client(&self) -> anyhow::Result<OperatorServiceClient<Channel>> {
        Ok(OperatorServiceClient::new(self.channel().await?)
            .max_decoding_message_size(crate::server::MAX_OPERATOR_MESSAGE))
    }

    /// An access-service client (credentials, enrolment tokens, audit).
    pub async fn access_client(
        &self,
    ) -> anyhow::Result<v1::access_service_client::AccessServiceClient<Channel>> {
        Ok(v1::access_service_client::AccessServiceClient::new(
            self.channel().await?,
        ))
    }

    /// An enrolment bundle for one station (as `flashgate station bundle` makes it): this
    /// coordinator's endpoint, CA and lease key, and a fresh one-time token valid for an hour.
    pub async fn enrolment_bundle(
        &self,
        note: &str,
    ) -> anyhow::Result<flashgate_proto::bundle::EnrolmentBundle> {
        let mut client = self.access_client().await?;
        let made = client
            .create_enrolment_token(self.operator_request(v1::CreateEnrolmentTokenRequest {
                valid_seconds: 3600,
                note: note.to_owned(),
            }))
            .await?
            .into_inner();
        Ok(flashgate_proto::bundle::EnrolmentBundle {
            format: flashgate_proto::bundle::FORMAT,
            endpoint: self.endpoint.clone(),
            ca_pem: self.ca_pem.clone(),
            lease_signing_public_key: hex::encode(&made.lease_signing_public_key),
            vendor_public_keys: Vec::new(),
            enrolment_token: made.token,
            expires_at_ms: made.expires_at_ms,
        })
    }

    /// A new operator credential with `role`, made by the bootstrap admin; its token.
    pub async fn operator_with_role(
        &self,
        name: &str,
        role: crate::access::Role,
    ) -> anyhow::Result<String> {
        let mut client = self.access_client().await?;
        Ok(client
            .create_operator(self.operator_request(v1::CreateOperatorRequest {
                name: name.to_owned(),
                role: role.to_proto() as i32,
            }))
            .await?
            .into_inner()
            .token)
    }

    /// Registers a device directly in the store (as a station's install report would), with
    /// its key sealed under the KEK: for tests of the paths that need a registered device.
    pub async fn register_device(
        &self,
        product_id: u32,
        serial: &[u8; 16],
        device_key: &[u8; 32],
    ) -> anyhow::Result<()> {
        use crate::ids::{LeaseId, OrderId, ProductId, Serial, StationId};
        use crate::provisioning::DeviceRecord;
        use crate::repository::{Db, Txn};
        let c = &self.coordinator;
        let now = flashgate_proto::clock::now_ms();
        let record = DeviceRecord {
            serial: Serial(*serial),
            product_id: ProductId(product_id),
            order_id: OrderId::parse("test")?,
            lease_id: LeaseId::parse("test")?,
            station_id: StationId::parse(&"0".repeat(32))?,
            installed_at_ms: now,
            registered_at_ms: now,
            bootloader_version: 1,
            os_version: 0,
            test_outcome: v1::TestOutcome::Unspecified,
            test_log: String::new(),
            outcome: v1::InstallOutcome::Unspecified,
            sealed_device_key: c
                .kek()
                .seal(&crate::keys::device_key_aad(product_id, serial), device_key),
            state: crate::provisioning::DeviceState::Installed,
            certificate: Vec::new(),
            hello_challenge: Vec::new(),
            clone_evidence: Vec::new(),
            clone_signals: Vec::new(),
        };
        let key = record.key();
        let txn = Txn::new().absent::<DeviceRecord>(&key).put(&key, &record);
        let txn =
            crate::data_stream::index::DeviceIdIndex::add(txn, record.product_id, record.serial);
        let done = Db::new(c.store().clone()).commit(txn).await?;
        anyhow::ensure!(done, "device {} is already registered", Serial(*serial));
        Ok(())
    }

    /// `station` stored as it is (replacing any record of its id), and a signed call of it
    /// with a fresh nonce: for tests that drive the grant and issuance flows in-process, past
    /// the signature check (`Leases::acquire`, `Certificates::issue`). One call per request.
    pub async fn station_call(
        &self,
        station: &crate::provisioning::StationRecord,
    ) -> anyhow::Result<crate::provisioning::signed_call::SignedCall> {
        use crate::provisioning::signed_call::{NonceClaim, SignedCall};
        use crate::provisioning::StationRecord;
        use crate::repository::{Db, Txn};
        let db = Db::new(self.coordinator.store().clone());
        let id = &station.station_id;
        let stored = match db.get::<StationRecord>(id).await? {
            Some(stored) => stored,
            None => {
                db.commit(Txn::new().absent::<StationRecord>(id).put(id, station))
                    .await?;
                db.get::<StationRecord>(id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("station {id} was not stored"))?
            }
        };
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
        Ok(SignedCall {
            nonce: NonceClaim::new(id.clone(), nonce, flashgate_proto::clock::now_ms() as u64),
            station: stored,
        })
    }

    /// The private half of a product's current authority key, opened from the store: for
    /// tests that certify boards in-process (the coordinator never hands it out).
    pub async fn authority_signing_key(&self, product_id: u32) -> anyhow::Result<SigningKey> {
        let c = &self.coordinator;
        Ok(c.catalogue()
            .products
            .authority()
            .current(crate::ids::ProductId(product_id))
            .await?
            .signing_key(c.kek())?)
    }

    /// A client of the data service (ingest, queries, stats).
    pub async fn coordinator_data_client(
        &self,
    ) -> flashgate_proto::v1::data_service_client::DataServiceClient<Channel> {
        flashgate_proto::v1::data_service_client::DataServiceClient::new(
            self.channel()
                .await
                .expect("the test coordinator accepts connections"),
        )
    }

    /// Wraps an operator request with the bearer token.
    pub fn operator_request<T>(&self, message: T) -> tonic::Request<T> {
        operator_request(&self.operator_token, message)
    }

    /// Approves an enrolled station.
    pub async fn approve(&self, station_id: &str) -> anyhow::Result<v1::Station> {
        let mut client = self.operator_client().await?;
        Ok(client
            .approve_station(self.operator_request(v1::ApproveStationRequest {
                station_id: station_id.to_owned(),
            }))
            .await?
            .into_inner())
    }

    /// Creates product `product_id` with `vendor` as its key, uploads a bootloader signed by
    /// it, and creates an order of `count` for `station_ids`. Returns the order.
    pub async fn create_demo_order(
        &self,
        product_id: u32,
        vendor: &SigningKey,
        station_ids: Vec<String>,
        count: u64,
    ) -> anyhow::Result<v1::Order> {
        let mut client = self.operator_client().await?;
        let products = client
            .list_products(self.operator_request(v1::ListProductsRequest {}))
            .await?
            .into_inner();
        let product = match products
            .products
            .into_iter()
            .find(|p| p.product_id == product_id)
        {
            Some(product) => product,
            None => client
                .create_product(self.operator_request(v1::CreateProductRequest {
                    product_id,
                    name: format!("demo product {product_id}"),
                    vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
                }))
                .await?
                .into_inner(),
        };
        let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
            vendor_public: vendor.verifying_key().to_bytes(),
            authority_public: product.authority_public_key.as_slice().try_into()?,
        };
        let image = sign_image(
            ImageKind::Bootloader,
            product_id,
            1,
            0,
            &flashgate_protocol::trust_anchors::pinning(b"demo bootloader body", &anchors),
            vendor,
        );
        let release = client
            .upload_release(self.operator_request(v1::UploadReleaseRequest { image }))
            .await?
            .into_inner();
        Ok(client
            .create_order(self.operator_request(v1::CreateOrderRequest {
                product_id,
                bootloader_digest: release.digest,
                station_ids,
                count,
                ..Default::default()
            }))
            .await?
            .into_inner())
    }

    /// Uploads a synthetic OS release `version` of product `product_id`, signed by `vendor`
    /// and pinning it and the product's authority key; returns its digest.
    pub async fn upload_os_release(
        &self,
        product_id: u32,
        vendor: &SigningKey,
        version: u32,
    ) -> anyhow::Result<Vec<u8>> {
        let mut client = self.operator_client().await?;
        let product = client
            .list_products(self.operator_request(v1::ListProductsRequest {}))
            .await?
            .into_inner()
            .products
            .into_iter()
            .find(|p| p.product_id == product_id)
            .ok_or_else(|| anyhow::anyhow!("no product {product_id}"))?;
        let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
            vendor_public: vendor.verifying_key().to_bytes(),
            authority_public: product.authority_public_key.as_slice().try_into()?,
        };
        let body = flashgate_protocol::trust_anchors::pinning(&[0x5a; 3000], &anchors);
        let image = sign_image(ImageKind::Os, product_id, version, 0, &body, vendor);
        Ok(client
            .upload_release(self.operator_request(v1::UploadReleaseRequest { image }))
            .await?
            .into_inner()
            .digest)
    }

    /// `count` devices of `product_id` registered ([`Self::register_device`]) with random
    /// serials and device keys: (serial, key) each.
    pub async fn register_random_devices(
        &self,
        product_id: u32,
        count: usize,
    ) -> anyhow::Result<Vec<([u8; 16], [u8; 32])>> {
        use rand_core::RngCore;
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            let (mut serial, mut key) = ([0u8; 16], [0u8; 32]);
            OsRng.fill_bytes(&mut serial);
            OsRng.fill_bytes(&mut key);
            self.register_device(product_id, &serial, &key).await?;
            devices.push((serial, key));
        }
        Ok(devices)
    }

    /// Device `serial` fetches its package and confirms it, as its bootloader would after the
    /// new OS ran: a status receipt made with its device `key`, answering the package's
    /// challenge, showing the package's version running. The coordinator's answer.
    pub async fn confirm_update(
        &self,
        product_id: u32,
        serial: [u8; 16],
        key: &[u8; 32],
    ) -> anyhow::Result<v1::DeviceUpdateStatus> {
        use flashgate_proto::v1::update_service_client::UpdateServiceClient;
        use flashgate_protocol::hello::DeviceState;
        use flashgate_protocol::update::boot_state::{BootState, Outcome, Phase};
        use flashgate_protocol::update::receipt::{self, StatusReceipt};
        let mut updates = UpdateServiceClient::new(self.channel().await?);
        let package = updates
            .get_update_package(self.operator_request(v1::GetUpdatePackageRequest {
                product_id,
                serial: serial.to_vec(),
            }))
            .await?
            .into_inner();
        let boot = BootState {
            phase: Phase::Idle,
            outcome: Outcome::Updated,
            floor: package.version,
            new_version: package.version,
            ..BootState::default()
        };
        let version = package.version;
        let r = StatusReceipt::new(
            serial,
            product_id,
            1,
            DeviceState::OsRunning { version },
            &boot,
        );
        let challenge: [u8; 32] = package.challenge.as_slice().try_into()?;
        Ok(updates
            .report_update(self.operator_request(v1::ReportUpdateRequest {
                product_id,
                serial: serial.to_vec(),
                receipt: receipt::encode(key, &challenge, &r).to_vec(),
                refused_code: 0,
            }))
            .await?
            .into_inner())
    }
}

impl Drop for TestCoordinator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Wraps an operator request with the operator's credentials, added by the one interceptor
/// every client uses ([`OperatorCredentials`](flashgate_proto::operator_auth::OperatorCredentials)).
pub fn operator_request<T>(token: &str, message: T) -> tonic::Request<T> {
    use tonic::service::Interceptor as _;
    let request = tonic::Request::new(message);
    let Ok(mut credentials) = flashgate_proto::operator_auth::OperatorCredentials::bearer(token)
    else {
        return request;
    };
    let (metadata, extensions, message) = request.into_parts();
    match credentials.call(tonic::Request::from_parts(metadata, extensions, ())) {
        Ok(with) => {
            let (metadata, extensions, ()) = with.into_parts();
            tonic::Request::from_parts(metadata, extensions, message)
        }
        Err(_) => tonic::Request::new(message),
    }
}
