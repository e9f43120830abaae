//! The station's gRPC client: every call signed with the station key (`StationSigner`), a lazy
//! channel that reconnects by itself after an outage, and a deadline per call.

use std::time::Duration;

use flashgate_proto::station_auth::{methods, StationSigner};
use flashgate_proto::transport::{self, Security, TransportError};
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use tonic::transport::Channel;

/// Deadline of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer carrying an image or a package.
const MAX_IMAGE_MESSAGE: usize = 32 * 1024 * 1024;

/// One call: a client span (its W3C `traceparent` goes into the request metadata, so the
/// coordinator's spans join the caller's trace) and a latency metric; neither when telemetry is
/// off.
async fn call<T, R, Fut>(
    method: &'static str,
    mut request: tonic::Request<T>,
    send: impl FnOnce(tonic::Request<T>) -> Fut,
) -> Result<R, tonic::Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    if !flashgate_telemetry::tracing_enabled() && !flashgate_telemetry::metrics_enabled() {
        return send(request).await.map(tonic::Response::into_inner);
    }
    let span = tracing::info_span!("rpc_client", method);
    span.in_scope(|| flashgate_telemetry::inject(request.metadata_mut()));
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument(send(request), span).await;
    let code = result
        .as_ref()
        .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
    crate::metrics::rpc(method, code, started.elapsed());
    result.map(tonic::Response::into_inner)
}

/// True when a call failed for want of the coordinator (unreachable, timed out, restarting):
/// worth retrying. Every other code is the coordinator's answer.
pub fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

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
    /// A client of `endpoint` (`https://host:port`) over `security` (TLS presenting the
    /// station's identity certificate, or plain text when asked for by name). Does not
    /// connect until the first call.
    pub fn new(
        endpoint: &str,
        security: &Security,
        signer: StationSigner,
    ) -> Result<Self, TransportError> {
        let channel = transport::endpoint(endpoint, &signer.security(security)?)?
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

    /// Registers this station's public keys (idempotent).
    pub async fn enrol(
        &self,
        request: v1::EnrolRequest,
    ) -> Result<v1::EnrolResponse, tonic::Status> {
        let request = self.signer.sign(methods::ENROL, request);
        let mut client = self.client.clone();
        call("Enrol", request, |r| async move { client.enrol(r).await }).await
    }

    /// Orders this station may work on.
    pub async fn assigned_orders(&self) -> Result<Vec<v1::Order>, tonic::Status> {
        let request = self.signer.sign(
            methods::LIST_ASSIGNED_ORDERS,
            v1::ListAssignedOrdersRequest {},
        );
        let mut client = self.client.clone();
        Ok(call("ListAssignedOrders", request, |r| async move {
            client.list_assigned_orders(r).await
        })
        .await?
        .orders)
    }

    /// A release image of `order_id` by digest, sealed to this station's X25519 key
    /// ([`flashgate_proto::sealed_release`]).
    pub async fn fetch_release(
        &self,
        digest: &[u8],
        order_id: &str,
    ) -> Result<Vec<u8>, tonic::Status> {
        let request = self.signer.sign(
            methods::FETCH_RELEASE,
            v1::FetchReleaseRequest {
                digest: digest.to_vec(),
                order_id: order_id.to_owned(),
            },
        );
        let mut client = self
            .client
            .clone()
            .max_decoding_message_size(MAX_IMAGE_MESSAGE);
        Ok(call("FetchRelease", request, |r| async move {
            client.fetch_release(r).await
        })
        .await?
        .sealed_image)
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
        let mut client = self.client.clone();
        call("AcquireLease", request, |r| async move {
            client.acquire_lease(r).await
        })
        .await?
        .lease
        .ok_or_else(|| tonic::Status::internal("coordinator granted no lease"))
    }

    /// The certificate of one chip, its key sealed to `loader_public`.
    pub async fn issue_device_certificate(
        &self,
        lease_id: &str,
        serial: &[u8; 16],
        loader_public: &[u8; 32],
    ) -> Result<v1::IssueDeviceCertificateResponse, tonic::Status> {
        let request = self.signer.sign(
            methods::ISSUE_DEVICE_CERTIFICATE,
            v1::IssueDeviceCertificateRequest {
                lease_id: lease_id.to_owned(),
                serial: serial.to_vec(),
                loader_public_key: loader_public.to_vec(),
            },
        );
        let mut client = self.client.clone();
        call("IssueDeviceCertificate", request, |r| async move {
            client.issue_device_certificate(r).await
        })
        .await
    }

    /// Reports one install.
    pub async fn report_install(
        &self,
        request: v1::ReportInstallRequest,
    ) -> Result<v1::ReportInstallResponse, tonic::Status> {
        let request = self.signer.sign(methods::REPORT_INSTALL, request);
        let mut client = self.client.clone();
        call("ReportInstall", request, |r| async move {
            client.report_install(r).await
        })
        .await
    }

    /// The per-device package of the order's OS for board `serial` of `lease_id`: envelope,
    /// ciphertext chunks, status challenge (never the image or its key).
    pub async fn get_factory_package(
        &self,
        lease_id: &str,
        serial: &[u8; 16],
    ) -> Result<v1::UpdatePackage, tonic::Status> {
        let request = self.signer.sign(
            methods::GET_FACTORY_PACKAGE,
            v1::GetFactoryPackageRequest {
                lease_id: lease_id.to_owned(),
                serial: serial.to_vec(),
            },
        );
        let mut client = self
            .client
            .clone()
            .max_decoding_message_size(MAX_IMAGE_MESSAGE);
        call("GetFactoryPackage", request, |r| async move {
            client.get_factory_package(r).await
        })
        .await
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
        let mut client = self.client.clone();
        call("ReturnLease", request, |r| async move {
            client.return_lease(r).await
        })
        .await
    }
}
