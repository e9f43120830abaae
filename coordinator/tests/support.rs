//! Shared test helpers: a real etcd process, simulated stations.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::store::etcd::EtcdStore;
use flashgate_coordinator::testing::operator_request;
use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::transport::{ClientTls, Security};
use flashgate_proto::v1::{
    self, operator_service_client::OperatorServiceClient,
    station_service_client::StationServiceClient,
};
use flashgate_protocol::codec::Codec as _;
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;
use tonic::transport::Channel;
use x25519_dalek::{PublicKey, StaticSecret};

pub const ETCD: &str = "/usr/bin/etcd";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// An etcd server started from the Debian package, killed on drop.
pub struct EtcdProcess {
    child: Option<Child>,
    pub url: String,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl EtcdProcess {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut this = Self {
            child: None,
            url: format!("http://127.0.0.1:{}", free_port()),
            peer_port: free_port(),
            dir,
        };
        this.spawn();
        this
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        self.child = Some(child);
    }

    /// Kills etcd with SIGKILL (a crash) and starts it again on the same data.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Waits until etcd answers; returns a store under a fresh namespace.
    pub async fn store(&self, namespace: &str) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&self.url), namespace).await
            {
                use flashgate_coordinator::store::KvStore;
                if store.get("probe").await.is_ok() {
                    return store;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up at {}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A simulated station: its two keys and a client.
pub struct SimStation {
    pub signer: StationSigner,
    pub signing_key: SigningKey,
    pub x25519: StaticSecret,
    pub client: StationServiceClient<Channel>,
}

/// How tests reach a coordinator: TLS trusting `ca_pem` (empty: plain text), optionally as the
/// station whose identity key is `station`.
pub fn security(ca_pem: &str, station: Option<&SigningKey>) -> Security {
    if ca_pem.is_empty() {
        return Security::InsecurePlaintext;
    }
    let tls = ClientTls::new(ca_pem.as_bytes().to_vec());
    Security::Tls(match station {
        Some(key) => tls
            .with_station_key(key)
            .expect("a station identity certificate"),
        None => tls,
    })
}

/// A channel to `endpoint` (see [`security`]).
pub async fn channel(
    endpoint: &str,
    ca_pem: &str,
    station: Option<&SigningKey>,
) -> Result<Channel, tonic::transport::Error> {
    flashgate_proto::transport::endpoint(endpoint, &security(ca_pem, station))
        .expect("the endpoint matches its security")
        .connect()
        .await
}

/// A CA and server certificate for loopback, in `dir` (`ca.pem`, `server.pem`, `server.key`);
/// the CA's PEM.
pub fn loopback_tls(dir: &std::path::Path) -> String {
    flashgate_coordinator::tls::init(dir, &["127.0.0.1".to_owned(), "localhost".to_owned()], 1)
        .expect("a loopback certificate")
        .ca_pem
}

impl SimStation {
    /// A station reaching the test coordinator `tc` (mutual TLS with its own identity).
    pub async fn to(tc: &flashgate_coordinator::testing::TestCoordinator) -> Self {
        Self::connect(&tc.endpoint, &tc.ca_pem).await
    }

    /// A station reaching `endpoint` over TLS trusting `ca_pem` (empty: plain text).
    pub async fn connect(endpoint: &str, ca_pem: &str) -> Self {
        let signing_key = SigningKey::generate(&mut OsRng);
        let x25519 = StaticSecret::random_from_rng(OsRng);
        let client = StationServiceClient::new(
            channel(endpoint, ca_pem, Some(&signing_key))
                .await
                .expect("coordinator reachable"),
        );
        Self {
            signer: StationSigner::new(signing_key.clone()),
            signing_key,
            x25519,
            client,
        }
    }

    pub fn id(&self) -> String {
        self.signer.station_id().to_owned()
    }

    pub fn enrol_request(&self) -> v1::EnrolRequest {
        v1::EnrolRequest {
            ed25519_public_key: self.signing_key.verifying_key().to_bytes().to_vec(),
            x25519_public_key: PublicKey::from(&self.x25519).to_bytes().to_vec(),
            name: "test station".into(),
            factory: "f1".into(),
            ..Default::default()
        }
    }

    pub async fn enrol(&mut self) -> Result<v1::EnrolResponse, tonic::Status> {
        let request = self.signer.sign(methods::ENROL, self.enrol_request());
        self.client.enrol(request).await.map(|r| r.into_inner())
    }

    pub async fn acquire(
        &mut self,
        order_id: &str,
        count: u32,
        validity_seconds: u32,
    ) -> Result<v1::SignedLease, tonic::Status> {
        let request = self.signer.sign(
            methods::ACQUIRE_LEASE,
            v1::AcquireLeaseRequest {
                order_id: order_id.into(),
                count,
                validity_seconds,
                allow_partial: false,
            },
        );
        Ok(self
            .client
            .acquire_lease(request)
            .await?
            .into_inner()
            .lease
            .expect("a lease"))
    }

    /// `IssueDeviceCertificate` for `serial`, its key sealed to `loader`.
    pub async fn certify_to(
        &mut self,
        lease_id: &str,
        serial: [u8; 16],
        loader: &StaticSecret,
    ) -> Result<v1::IssueDeviceCertificateResponse, tonic::Status> {
        let request = self.signer.sign(
            methods::ISSUE_DEVICE_CERTIFICATE,
            v1::IssueDeviceCertificateRequest {
                lease_id: lease_id.into(),
                serial: serial.to_vec(),
                loader_public_key: PublicKey::from(loader).to_bytes().to_vec(),
            },
        );
        self.client
            .issue_device_certificate(request)
            .await
            .map(|r| r.into_inner())
    }

    /// `IssueDeviceCertificate` for `serial` (a fresh loader key).
    pub async fn certify(
        &mut self,
        lease_id: &str,
        serial: [u8; 16],
    ) -> Result<v1::IssueDeviceCertificateResponse, tonic::Status> {
        let loader = StaticSecret::random_from_rng(OsRng);
        self.certify_to(lease_id, serial, &loader).await
    }

    /// `IssueDeviceCertificate` for `serial`, and the device key the coordinator drew for it,
    /// opened as the chip's loader would (the test plays the loader).
    pub async fn certified_key(
        &mut self,
        lease_id: &str,
        serial: [u8; 16],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, tonic::Status> {
        let loader = StaticSecret::random_from_rng(OsRng);
        let issued = self.certify_to(lease_id, serial, &loader).await?;
        let certificate =
            flashgate_protocol::certificate::DeviceCertificate::read_bytes(&issued.certificate)
                .expect("a certificate decodes");
        Ok(flashgate_protocol::device_key_transport::open(
            &loader,
            &serial,
            &certificate,
            &issued
                .sealed_device_key
                .as_slice()
                .try_into()
                .expect("a sealed key of 80 bytes"),
        )
        .expect("the key opens for its loader"))
    }

    /// What a station does for one board: its certificate, then the install report (without
    /// a hello proof: the device stays CERTIFIED).
    pub async fn report(
        &mut self,
        lease_id: &str,
        serial: [u8; 16],
        installed_at_ms: i64,
    ) -> Result<v1::ReportInstallResponse, tonic::Status> {
        self.certify(lease_id, serial).await?;
        self.report_only(lease_id, serial, installed_at_ms).await
    }

    /// The install report alone (the certificate issued before, or not).
    pub async fn report_only(
        &mut self,
        lease_id: &str,
        serial: [u8; 16],
        installed_at_ms: i64,
    ) -> Result<v1::ReportInstallResponse, tonic::Status> {
        let request = self.signer.sign(
            methods::REPORT_INSTALL,
            v1::ReportInstallRequest {
                lease_id: lease_id.into(),
                serial: serial.to_vec(),
                bootloader_version: 1,
                test_result: Some(v1::TestResult {
                    outcome: v1::TestOutcome::Pass as i32,
                    log: "ok".into(),
                }),
                outcome: v1::InstallOutcome::Provisioned as i32,
                installed_at_ms,
                ..Default::default()
            },
        );
        self.client
            .report_install(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Sends any report (signed), e.g. a FAILED one.
    pub async fn report_raw(
        &mut self,
        request: v1::ReportInstallRequest,
    ) -> Result<v1::ReportInstallResponse, tonic::Status> {
        let request = self.signer.sign(methods::REPORT_INSTALL, request);
        self.client
            .report_install(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn return_lease(
        &mut self,
        lease_id: &str,
    ) -> Result<v1::ReturnLeaseResponse, tonic::Status> {
        let request = self.signer.sign(
            methods::RETURN_LEASE,
            v1::ReturnLeaseRequest {
                lease_id: lease_id.into(),
            },
        );
        self.client
            .return_lease(request)
            .await
            .map(|r| r.into_inner())
    }
}

/// Creates product `product_id` (a fresh vendor key) and uploads a bootloader signed by it,
/// over a raw operator client: the vendor key and the release.
pub async fn product_with_bootloader(
    op: &mut OperatorServiceClient<Channel>,
    token: &str,
    product_id: u32,
) -> (SigningKey, v1::Release) {
    let vendor = SigningKey::generate(&mut OsRng);
    let product = op
        .create_product(operator_request(
            token,
            v1::CreateProductRequest {
                product_id,
                name: format!("product {product_id}"),
                vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let body = pinned(b"bl", &vendor, &product);
    let image = sign_image(ImageKind::Bootloader, product_id, 1, 0, &body, &vendor);
    let release = op
        .upload_release(operator_request(token, v1::UploadReleaseRequest { image }))
        .await
        .unwrap()
        .into_inner();
    (vendor, release)
}

/// Creates product `product_id` of `tc` (a fresh vendor key, named `name`) and uploads OS
/// `version` (`body_len` bytes) signed by it: the vendor key and the release digest.
pub async fn product_with_os(
    tc: &flashgate_coordinator::testing::TestCoordinator,
    product_id: u32,
    name: &str,
    version: u32,
    body_len: usize,
) -> (SigningKey, Vec<u8>) {
    let vendor = SigningKey::generate(&mut OsRng);
    let mut op = tc.operator_client().await.unwrap();
    let product = op
        .create_product(tc.operator_request(v1::CreateProductRequest {
            product_id,
            name: name.into(),
            vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    let body = pinned(&vec![0x5a; body_len], &vendor, &product);
    let image = sign_image(ImageKind::Os, product_id, version, 0, &body, &vendor);
    let digest = op
        .upload_release(tc.operator_request(v1::UploadReleaseRequest { image }))
        .await
        .unwrap()
        .into_inner()
        .digest;
    (vendor, digest)
}

/// `body` pinning `vendor` and `product`'s authority key (what a bootloader or OS release must).
pub fn pinned(body: &[u8], vendor: &SigningKey, product: &v1::Product) -> Vec<u8> {
    flashgate_protocol::trust_anchors::pinning(
        body,
        &flashgate_protocol::trust_anchors::TrustAnchors {
            vendor_public: vendor.verifying_key().to_bytes(),
            authority_public: product.authority_public_key.as_slice().try_into().unwrap(),
        },
    )
}

/// `body` pinning `vendor` and the current authority key of product `product_id` of `tc`.
pub async fn pinned_by(
    tc: &flashgate_coordinator::testing::TestCoordinator,
    product_id: u32,
    body: &[u8],
    vendor: &SigningKey,
) -> Vec<u8> {
    let products = tc
        .operator_client()
        .await
        .unwrap()
        .list_products(tc.operator_request(v1::ListProductsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .products;
    let product = products
        .iter()
        .find(|p| p.product_id == product_id)
        .expect("the product exists");
    pinned(body, vendor, product)
}

pub use flashgate_proto::clock::now_ms;

pub fn random_serial() -> [u8; 16] {
    use rand_core::RngCore;
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial
}
