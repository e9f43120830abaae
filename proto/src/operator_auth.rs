//! How an operator authenticates: `authorization: Bearer TOKEN` on every call. Clients add it
//! with one tonic interceptor, [`OperatorCredentials`]; the coordinator reads it back with
//! [`bearer_token`].
//!
//! ```
//! use flashgate_proto::operator_auth::OperatorCredentials;
//! use flashgate_proto::v1::operator_service_client::OperatorServiceClient;
//! # fn demo(channel: tonic::transport::Channel) -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = OperatorCredentials::bearer("t0ken")?;
//! let _client = OperatorServiceClient::with_interceptor(channel, credentials);
//! # Ok(()) }
//! ```

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;

/// The header that carries the token.
pub const HEADER: &str = "authorization";
/// What comes before the token in [`HEADER`].
pub const SCHEME: &str = "Bearer ";

/// Adds the operator's token to every request; with no token, adds nothing (calls that need
/// none, such as data ingest, still work).
#[derive(Clone, Default)]
pub struct OperatorCredentials {
    authorization: Option<AsciiMetadataValue>,
}

/// The token holds bytes a header cannot carry.
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
        let mut value: AsciiMetadataValue = format!("{SCHEME}{token}")
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
            request.metadata_mut().insert(HEADER, value.clone());
        }
        Ok(request)
    }
}

/// The token a request carries, if it carries one the way [`OperatorCredentials`] sends it.
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(SCHEME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(credentials: &mut OperatorCredentials) -> Option<String> {
        let request = credentials.call(tonic::Request::new(())).unwrap();
        bearer_token(request.metadata()).map(String::from)
    }

    #[test]
    fn the_token_is_added_once_and_never_printed() {
        let mut credentials = OperatorCredentials::bearer("s3cret").unwrap();
        assert_eq!(sent(&mut credentials).as_deref(), Some("s3cret"));
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert_eq!(sent(&mut OperatorCredentials::bearer("").unwrap()), None);
        assert!(OperatorCredentials::bearer("line\nbreak").is_err());
        assert!(OperatorCredentials::bearer("caf\u{e9}").is_err());
    }
}
