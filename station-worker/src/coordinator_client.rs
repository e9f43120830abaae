//! The station's gRPC client: every call signed with the station key (`StationSigner`), a lazy
//! channel that reconnects by itself after an outage, and a deadline per call.

use std::time::Duration;

use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use tonic::transport::{Channel, Endpoint};

/// Deadline of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A signed client of the coordinator's station service.
#[derive(Clone)]
pub struct CoordinatorClient {
    client: StationServiceClient<Channel>,
    signer: std::sync::Arc<StationSigner>,
    endpoint: String,
}

impl std::fmt::Debug for CoordinatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl CoordinatorClient {
    /// A client of `endpoint` (`http://host:port`). Does not connect until the first call.
    pub fn new(endpoint: &str, signer: StationSigner) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| anyhow::anyhow!("coordinator endpoint {endpoint:?} is not a URL: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: StationServiceClient::new(channel),
            signer: std::sync::Arc::new(signer),
            endpoint: endpoint.to_owned(),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The coordinator's lease-signing key.
    pub async fn lease_key(&self) -> Result<ed25519_dalek::VerifyingKey, tonic::Status> {
        let info = self
            .client
            .clone()
            .get_coordinator_info(v1::GetCoordinatorInfoRequest {})
            .await?
            .into_inner();
        let bytes: [u8; 32] = info
            .lease_signing_public_key
            .as_slice()
            .try_into()
            .map_err(|_| tonic::Status::internal("coordinator lease key is not 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| tonic::Status::internal("coordinator lease key is not a valid key"))
    }

    /// Registers this station's public keys (idempotent).
    pub async fn enrol(
        &self,
        request: v1::EnrolRequest,
    ) -> Result<v1::EnrolResponse, tonic::Status> {
        let request = self.signer.sign(methods::ENROL, request);
        Ok(self.client.clone().enrol(request).await?.into_inner())
    }

    /// Orders this station may work on.
    pub async fn assigned_orders(&self) -> Result<Vec<v1::Order>, tonic::Status> {
        let request = self.signer.sign(
            methods::LIST_ASSIGNED_ORDERS,
            v1::ListAssignedOrdersRequest {},
        );
        Ok(self
            .client
            .clone()
            .list_assigned_orders(request)
            .await?
            .into_inner()
            .orders)
    }

    /// A release image by digest.
    pub async fn fetch_release(&self, digest: &[u8]) -> Result<Vec<u8>, tonic::Status> {
        let request = self.signer.sign(
            methods::FETCH_RELEASE,
            v1::FetchReleaseRequest {
                digest: digest.to_vec(),
            },
        );
        Ok(self
            .client
            .clone()
            .max_decoding_message_size(32 * 1024 * 1024)
            .fetch_release(request)
            .await?
            .into_inner()
            .image)
    }

    /// Asks for a lease of up to `count` devices (partial grants allowed).
    pub async fn acquire_lease(
        &self,
        order_id: &str,
        count: u32,
        validity_seconds: u32,
    ) -> Result<v1::SignedLease, tonic::Status> {
        let request = self.signer.sign(
            methods::ACQUIRE_LEASE,
            v1::AcquireLeaseRequest {
                order_id: order_id.to_owned(),
                count,
                validity_seconds,
                allow_partial: true,
            },
        );
        self.client
            .clone()
            .acquire_lease(request)
            .await?
            .into_inner()
            .lease
            .ok_or_else(|| tonic::Status::internal("coordinator granted no lease"))
    }

    /// Reports one install.
    pub async fn report_install(
        &self,
        request: v1::ReportInstallRequest,
    ) -> Result<v1::ReportInstallResponse, tonic::Status> {
        let request = self.signer.sign(methods::REPORT_INSTALL, request);
        Ok(self
            .client
            .clone()
            .report_install(request)
            .await?
            .into_inner())
    }

    /// Gives a lease's unused slots back.
    pub async fn return_lease(
        &self,
        lease_id: &str,
    ) -> Result<v1::ReturnLeaseResponse, tonic::Status> {
        let request = self.signer.sign(
            methods::RETURN_LEASE,
            v1::ReturnLeaseRequest {
                lease_id: lease_id.to_owned(),
            },
        );
        Ok(self
            .client
            .clone()
            .return_lease(request)
            .await?
            .into_inner())
    }
}
