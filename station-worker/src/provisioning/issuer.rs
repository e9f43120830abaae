//! The station's [`CertificateIssuer`](super::CertificateIssuer): `IssueDeviceCertificate` on
//! the coordinator, called from a flow's blocking thread.

use crate::coordinator_client::{transient, CoordinatorClient};

/// [`CertificateIssuer`](super::CertificateIssuer) over the coordinator: the
/// flow's blocking thread waits on the async call on the station's runtime.
#[derive(Debug, Clone)]
pub struct CoordinatorIssuer {
    client: CoordinatorClient,
    runtime: tokio::runtime::Handle,
}

impl CoordinatorIssuer {
    /// Issues through `client` on `runtime` (the station's; the flow's thread is not on it).
    pub fn new(client: CoordinatorClient, runtime: tokio::runtime::Handle) -> Self {
        Self { client, runtime }
    }
}

impl super::CertificateIssuer for CoordinatorIssuer {
    fn issue(
        &self,
        lease_id: &str,
        serial: &flashgate_protocol::Serial,
        loader_public: &[u8; 32],
    ) -> Result<super::IssuedCertificate, super::IssueError> {
        use super::{IssueError, IssuedCertificate};
        let answer = self.runtime.block_on(self.client.issue_device_certificate(
            lease_id,
            serial,
            loader_public,
        ));
        match answer {
            Ok(r) => IssuedCertificate::from_response(&r).ok_or_else(|| {
                IssueError::Refused("the coordinator's certificate answer is malformed".into())
            }),
            Err(status) if transient(&status) => {
                Err(IssueError::Unavailable(status.message().to_owned()))
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                Err(IssueError::LeaseSpent(status.message().to_owned()))
            }
            Err(status) => Err(IssueError::Refused(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}
