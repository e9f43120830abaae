//! Start an in-process coordinator on a loopback port, for end-to-end tests (the station
//! worker's included).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let coordinator = flashgate_coordinator::testing::TestCoordinator::start_embedded().await?;
//! let mut stations = coordinator.station_client().await?;
//! // … enrol with flashgate_proto::station_auth::StationSigner, then:
//! coordinator.approve(&"<station id>".to_string()).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
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
use crate::store::{embedded::EmbeddedStore, KvStore};

/// A running coordinator; stops when dropped or on [`TestCoordinator::stop`].
pub struct TestCoordinator {
    /// The gRPC address it listens on (loopback, a free port).
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bearer token its operator calls take.
    pub operator_token: String,
    /// The coordinator itself, for checks that look past the API.
    pub coordinator: Arc<Coordinator>,
    /// The data ingest shared by gRPC and UDP.
    pub data: Arc<DataIngest>,
    /// Loopback UDP port for sealed data records.
    pub udp_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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

    /// Any store, given keys.
    pub async fn start(
        store: Arc<dyn KvStore>,
        config: CoordinatorConfig,
        signing_key: SigningKey,
        kek: Kek,
    ) -> anyhow::Result<Self> {
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
            async move {
                let _ = rx.await;
                udp_task.abort();
            },
        ));
        Ok(Self {
            addr,
            endpoint: format!("http://{addr}"),
            operator_token,
            coordinator,
            data,
            udp_addr,
            shutdown: Some(tx),
            task: Some(task),
            _dir: None,
        })
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

    /// A station-service client connected to it (requests still need signing).
    pub async fn station_client(&self) -> anyhow::Result<StationServiceClient<Channel>> {
        Ok(StationServiceClient::connect(self.endpoint.clone()).await?)
    }

    /// An operator-service client connected to it, taking the largest operator messages.
    pub async fn operator_client(&self) -> anyhow::Result<OperatorServiceClient<Channel>> {
        Ok(OperatorServiceClient::connect(self.endpoint.clone())
            .await?
            .max_decoding_message_size(crate::server::MAX_OPERATOR_MESSAGE))
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
        };
        let key = record.key();
        let done = Db::new(c.store().clone())
            .commit(Txn::new().absent::<DeviceRecord>(&key).put(&key, &record))
            .await?;
        anyhow::ensure!(done, "device {} is already registered", Serial(*serial));
        Ok(())
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
        flashgate_proto::v1::data_service_client::DataServiceClient::connect(self.endpoint.clone())
            .await
            .expect("the test coordinator accepts connections")
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
