//! The CLI's gRPC clients: one channel to the coordinator, and the operator's credentials added
//! to every call by one tonic interceptor ([`OperatorCredentials`], defined beside the API in
//! `flashgate_proto::operator_auth` so that other hosts and tests use the same one). No command,
//! and no flow of this library, attaches a token itself: each takes a client from [`Clients`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use flashgate_cli::grpc::Clients;
//! let clients = Clients::connect("http://127.0.0.1:7400", "operator-token").await?;
//! let products = clients
//!     .operator()
//!     .list_products(flashgate_proto::v1::ListProductsRequest {})
//!     .await?;
//! # Ok(()) }
//! ```

pub use flashgate_proto::operator_auth::{InvalidToken, OperatorCredentials};
use flashgate_proto::v1::{
    data_service_client::DataServiceClient, operator_service_client::OperatorServiceClient,
    update_service_client::UpdateServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

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

/// Why [`Clients::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint does not parse as a URL.
    #[error("--endpoint {0:?} is not a URL like http://host:7400")]
    BadEndpoint(String),
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
}

impl Clients {
    /// Clients over an existing channel.
    pub fn new(channel: Channel, credentials: OperatorCredentials) -> Self {
        Self {
            channel,
            credentials,
        }
    }

    /// Connects to `endpoint` (eagerly, so an unreachable coordinator is reported here) with
    /// `token` as the operator's bearer token (empty: none).
    pub async fn connect(endpoint: &str, token: &str) -> Result<Self, ConnectError> {
        let credentials = OperatorCredentials::bearer(token)?;
        let bad = || ConnectError::BadEndpoint(endpoint.to_owned());
        let target = Endpoint::from_shared(endpoint.to_owned()).map_err(|_| bad())?;
        // `host:7400` parses as a URI too, but names no transport: say so instead of failing
        // to connect.
        if target.uri().scheme().is_none() || target.uri().host().is_none() {
            return Err(bad());
        }
        let channel = target
            .connect()
            .await
            .map_err(|source| ConnectError::Unreachable {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self::new(channel, credentials))
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

    /// A client of the data service.
    pub fn data(&self) -> DataClient {
        DataServiceClient::new(self.authorized()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }
}
