//! The device gateway (`serve --device-gateway-listen ADDR`): devices whose bootloader has
//! networking fetch their update here, with no host tool (`docs/protocol.md` §7, "Over the
//! network").
//!
//! A device connects over TCP and is served the UART's update session byte for byte (the
//! same frames, the same `BootloaderService` on the device): the gateway is the field tool's
//! logic moved next to the coordinator, calling the update flow in-process —
//! [`Delivery::package`](crate::update::Delivery::package) with all its checks (a release
//! targeted at the device, a rollout's open wave) and [`Updates::report`] for the receipt
//! or the refusal. Per connection ([`session`]):
//!
//! 1. `hello` with a fresh challenge, resent until answered; the answer is verified under the
//!    device key the registry holds, so only the device itself can make the gateway fetch (and
//!    re-issue) its package;
//! 2. its package, with the envelope of an earlier, unfinished transfer of the same campaign
//!    when there is one ([`resume`]): the device's staging slot then resumes at its next chunk;
//! 3. begin, the chunks the device still needs, finish, install;
//! 4. the status receipt (the bootloader answers it just before it starts the new OS), reported.
//!
//! The port is not authenticated: what it hands out opens only under the device's key, and a
//! receipt counts only if it verifies under that key. A session answers to one device at a
//! time; after it ends the connection stays open for the next one (an emulated board's guest
//! forward carries every connection of one power-on over one host connection).

mod resume;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::data_stream::DownQueue;
use crate::provisioning::Registry;
use crate::update::Updates;

pub use session::SessionEnd;

/// Timing of the gateway's sessions.
#[derive(Clone, Copy, Debug)]
pub struct GatewayOptions {
    /// How long a device has to answer a request (a chunk is programmed before its ack).
    pub reply_timeout: Duration,
    /// How long the first `hello` waits for its answer before it is resent (each wait after
    /// it twice as long, up to a minute).
    pub hello_every: Duration,
    /// How long a connection may stay silent before it is closed.
    pub idle_limit: Duration,
    /// After a refusal or while no package is published for the device: the wait before the
    /// next try on the same connection.
    pub retry_after: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(30),
            hello_every: Duration::from_secs(2),
            idle_limit: Duration::from_secs(600),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// The gateway: the update flow and the registry it verifies devices with.
#[derive(Clone)]
pub struct DeviceGateway {
    updates: Updates,
    /// The down-link: after a trial receipt, the running OS is asked for its own.
    down: DownQueue,
    registry: Registry,
    resume: Arc<resume::Envelopes>,
    options: GatewayOptions,
}

impl DeviceGateway {
    /// A gateway over the coordinator's update flow and device registry.
    pub fn new(
        updates: Updates,
        down: DownQueue,
        registry: Registry,
        options: GatewayOptions,
    ) -> Self {
        Self {
            updates,
            down,
            registry,
            resume: Arc::new(resume::Envelopes::default()),
            options,
        }
    }

    /// Serves devices on `listener` until `shutdown` completes; each connection on its own
    /// blocking thread (the session is a blocking request/response exchange).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %listener.local_addr()?, "serving the device gateway");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut shutdown => return Ok(()),
            };
            let gateway = self.clone();
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let end = stream
                    .into_std()
                    .map_err(anyhow::Error::from)
                    .and_then(|s| session::serve_connection(&gateway, &runtime, s));
                match end {
                    Ok(end) => tracing::info!(%peer, ?end, "device gateway connection ended"),
                    Err(error) => {
                        tracing::warn!(%peer, error = %format!("{error:#}"), "device gateway connection failed");
                    }
                }
            });
        }
    }
}
