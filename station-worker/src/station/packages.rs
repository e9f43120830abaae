//! Where a station run gets its boards' OS packages: the coordinator's `GetFactoryPackage`,
//! called from a probe actor's thread (the provisioning flow is synchronous) on the station's
//! runtime. Kept out of [`crate::provisioning`] so the flow does not depend on the client.

use std::time::{Duration, Instant};

use flashgate_protocol::Serial;

use crate::coordinator_client::{transient, CoordinatorClient};
use crate::provisioning::{FactoryPackage, PackageError, PackageSource};

/// Packages from the coordinator's `GetFactoryPackage`, asked from a probe actor's thread on
/// the station's runtime; an outage is retried until the step's time is up.
pub struct CoordinatorPackages {
    client: CoordinatorClient,
    runtime: tokio::runtime::Handle,
    retry_every: Duration,
}

impl CoordinatorPackages {
    /// Asks `client`, driving its calls on `runtime` (the station's, which must keep running:
    /// the probe threads block on it).
    pub fn new(
        client: CoordinatorClient,
        runtime: tokio::runtime::Handle,
        retry_every: Duration,
    ) -> Self {
        Self {
            client,
            runtime,
            retry_every,
        }
    }
}

impl PackageSource for CoordinatorPackages {
    fn factory_package(
        &self,
        lease_id: &str,
        serial: &Serial,
        timeout: Duration,
    ) -> Result<FactoryPackage, PackageError> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self
                .runtime
                .block_on(self.client.get_factory_package(lease_id, serial));
            match answer {
                Ok(package) => return package.try_into(),
                Err(status) if transient(&status) && Instant::now() < deadline => {
                    std::thread::sleep(self.retry_every);
                }
                Err(status) if transient(&status) => {
                    return Err(PackageError::Unreachable(status.message().to_owned()))
                }
                Err(status) => return Err(PackageError::Refused(status.message().to_owned())),
            }
        }
    }
}
