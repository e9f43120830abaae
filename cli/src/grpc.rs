//! The CLI's gRPC clients: one channel to the coordinator, and the operator's credentials added
//! to every call by one tonic interceptor ([`OperatorCredentials`], defined beside the API in
//! `flashgate_proto::operator_auth` so that other hosts and tests use the same one). No command,
//! and no flow of this library, attaches a token itself: each takes a client from [`Clients`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use flashgate_cli::grpc::Clients;
//! use flashgate_proto::transport::{ClientTls, Security};
//! let ca = std::fs::read("ca.pem")?;
//! let clients =
//!     Clients::connect("https://127.0.0.1:7400", &Security::Tls(ClientTls::new(ca)), "operator-token")
//!         .await?;
//! let products = clients
//!     .operator()
//!     .list_products(flashgate_proto::v1::ListProductsRequest {})
//!     .await?;
//! # Ok(()) }
//! ```

pub use flashgate_proto::operator_auth::{InvalidToken, OperatorCredentials};
use flashgate_proto::transport::{self, Security, TransportError};
use flashgate_proto::v1::{
    access_service_client::AccessServiceClient, data_service_client::DataServiceClient,
    device_message_service_client::DeviceMessageServiceClient,
    operator_service_client::OperatorServiceClient, update_service_client::UpdateServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Largest reply a client accepts: release images and update packages travel whole.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A channel with the operator's credentials on every call.
pub type Authorized = InterceptedService<Channel, OperatorCredentials>;
/// `flashgate.v1.OperatorService` (catalogue, orders, stations, registry, leases).
pub type OperatorClient = OperatorServiceClient<Authorized>;
/// `flashgate.v1.UpdateService` (publish, packages, receipts, status).
pub type UpdateClient = UpdateServiceClient<Authorized>;
/// `flashgate.v1.DataService` (ingest, queries, stats).
pub type DataClient = DataServiceClient<Authorized>;
/// `flashgate.v1.DeviceMessageService` (the down-link: send, list).
pub type DeviceMessageClient = DeviceMessageServiceClient<Authorized>;
/// `flashgate.v1.AccessService` (credentials, enrolment tokens, audit).
pub type AccessClient = AccessServiceClient<Authorized>;

/// Why [`Clients::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint does not parse as a URL.
    #[error("--endpoint {0:?} is not a URL like https://host:7400")]
    BadEndpoint(String),
    /// The endpoint and the TLS settings do not go together (plain text refused, no CA…).
    #[error(transparent)]
    Transport(TransportError),
    /// Nothing answered at the endpoint.
    #[error("cannot reach the coordinator at {endpoint}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What the transport said.
        #[source]
        source: tonic::transport::Error,
    },
    /// The token cannot go in a header.
    #[error(transparent)]
    Token(#[from] InvalidToken),
}

/// Every client of one coordinator, sharing one channel and one set of credentials.
#[derive(Clone, Debug)]
pub struct Clients {
    channel: Channel,
    credentials: OperatorCredentials,
    endpoint: String,
    ca_pem: Vec<u8>,
}

impl Clients {
    /// Clients over an existing channel.
    pub fn new(channel: Channel, credentials: OperatorCredentials) -> Self {
        Self {
            channel,
            credentials,
            endpoint: String::new(),
            ca_pem: Vec::new(),
        }
    }

    /// Connects to `endpoint` over `security` (eagerly, so an unreachable coordinator is
    /// reported here) with `token` as the operator's bearer token (empty: none).
    pub async fn connect(
        endpoint: &str,
        security: &Security,
        token: &str,
    ) -> Result<Self, ConnectError> {
        let credentials = OperatorCredentials::bearer(token)?;
        let target = transport::endpoint(endpoint, security).map_err(|e| match e {
            TransportError::BadEndpoint(_) => ConnectError::BadEndpoint(endpoint.to_owned()),
            other => ConnectError::Transport(other),
        })?;
        let channel = target
            .connect()
            .await
            .map_err(|source| ConnectError::Unreachable {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let mut this = Self::new(channel, credentials);
        this.endpoint = endpoint.to_owned();
        if let Security::Tls(tls) = security {
            this.ca_pem = tls.ca_pem().to_vec();
        }
        Ok(this)
    }

    /// The endpoint connected to (empty for [`Clients::new`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The CA trusted for it (PEM; empty for plain text or [`Clients::new`]).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    fn authorized(&self) -> Authorized {
        InterceptedService::new(self.channel.clone(), self.credentials.clone())
    }

    /// A client of the operator service.
    pub fn operator(&self) -> OperatorClient {
        OperatorServiceClient::new(self.authorized()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// A client of the update service.
    pub fn update(&self) -> UpdateClient {
        UpdateServiceClient::new(self.authorized()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// A client of the access service.
    pub fn access(&self) -> AccessClient {
        AccessServiceClient::new(self.authorized())
    }

    /// A client of the down-link's message service.
    pub fn device_messages(&self) -> DeviceMessageClient {
        DeviceMessageServiceClient::new(self.authorized())
    }

    /// A client of the data service.
    pub fn data(&self) -> DataClient {
        DataServiceClient::new(self.authorized()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }
}
