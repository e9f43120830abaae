//! The CLI's gRPC clients: one channel to the coordinator, and the operator's credentials added
//! to every call by one tonic interceptor ([`OperatorCredentials`]). No command, and no flow of
//! this library, attaches a token itself: each takes a client from [`Clients`].
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

use flashgate_proto::v1::{
    data_service_client::DataServiceClient, operator_service_client::OperatorServiceClient,
    update_service_client::UpdateServiceClient,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

/// Largest reply a client accepts: release images and update packages travel whole.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Adds `authorization: Bearer TOKEN` to every request; with no token, adds nothing (calls that
/// need none, such as the data relay's ingest, still work).
#[derive(Clone, Default)]
pub struct OperatorCredentials {
    authorization: Option<AsciiMetadataValue>,
}

/// The token holds bytes an HTTP/2 header cannot carry.
#[derive(Debug, thiserror::Error)]
#[error(
    "the operator token cannot be sent: it holds a control character or a non-ASCII byte \
     (check --token, FLASHGATE_TOKEN or the context's token file)"
)]
pub struct InvalidToken;

impl OperatorCredentials {
    /// Credentials for `token`; an empty token means none.
    pub fn bearer(token: &str) -> Result<Self, InvalidToken> {
        if token.is_empty() {
            return Ok(Self::default());
        }
        // HTTP allows bytes above 0x7f in a header, but the coordinator reads the header as
        // ASCII: such a token could never authenticate, so say why here.
        if !token.is_ascii() {
            return Err(InvalidToken);
        }
        let mut value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|_| InvalidToken)?;
        // Keeps the value out of tonic's and hyper's debug output.
        value.set_sensitive(true);
        Ok(Self {
            authorization: Some(value),
        })
    }
}

impl std::fmt::Debug for OperatorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = match self.authorization {
            Some(_) => "<redacted>",
            None => "none",
        };
        f.debug_struct("OperatorCredentials")
            .field("token", &token)
            .finish()
    }
}

impl Interceptor for OperatorCredentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(credentials: &mut OperatorCredentials) -> Option<String> {
        let request = credentials.call(tonic::Request::new(())).unwrap();
        request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_token_is_added_once_and_never_printed() {
        let mut credentials = OperatorCredentials::bearer("s3cret").unwrap();
        assert_eq!(
            authorization(&mut credentials).as_deref(),
            Some("Bearer s3cret")
        );
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert_eq!(
            authorization(&mut OperatorCredentials::bearer("").unwrap()),
            None
        );
        assert!(OperatorCredentials::bearer("line\nbreak").is_err());
        assert!(OperatorCredentials::bearer("caf\u{e9}").is_err());
    }
}
