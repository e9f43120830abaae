//! One device connection: hello, package, relay, receipt — then the next session on the same
//! connection, until it closes or stays silent for the idle limit.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_proto::v1;
use flashgate_protocol::hello::{self, HelloInfo, CHALLENGE_LEN};
use flashgate_protocol::uart::host::{HostLink, LinkError, RelayLimits, Relayed};
use flashgate_protocol::update::receipt;
use rand_core::{OsRng, RngCore};
use tokio::runtime::Handle;

use super::DeviceGateway;
use crate::audit::Actor;
use crate::data_stream::down::Outgoing;
use crate::error::CoordinatorError as E;
use crate::ids::Serial;

/// Challenges of the hellos not yet answered that a late answer may still prove (the device
/// answers each hello it receives; the ones sent before it connected arrive late).
const CHALLENGES_KEPT: usize = 16;
/// The longest wait between two hellos on a silent connection.
const HELLO_EVERY_MAX: Duration = Duration::from_secs(60);

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The device (or the network) closed it.
    Closed,
    /// Nothing answered for the idle limit.
    Idle,
}

/// How one session ended (the connection stays open).
enum Delivered {
    /// Installed; the receipt was reported if the device answered it.
    Installed,
    /// The device refused the package (reported with its code).
    Refused,
    /// No package may be delivered to this device now (none published, not in an open wave).
    NoPackage,
}

/// Serves sessions on `stream` until it closes or stays idle.
pub fn serve_connection(
    gateway: &DeviceGateway,
    runtime: &Handle,
    stream: TcpStream,
) -> anyhow::Result<SessionEnd> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let mut link = HostLink::new(stream);
    let session = Session {
        gateway,
        runtime,
        timeout: gateway.options.reply_timeout,
    };
    loop {
        let device = match session.hello(&mut link)? {
            Ok(device) => device,
            Err(end) => return Ok(end),
        };
        match session.deliver(&mut link, &device) {
            Ok(Delivered::Installed) => {}
            Ok(Delivered::Refused | Delivered::NoPackage) => {
                std::thread::sleep(gateway.options.retry_after);
            }
            Err(LinkError::Closed) => return Ok(SessionEnd::Closed),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("device {}: the session stopped", hex::encode(device.serial))
                })
            }
        }
    }
}

struct Session<'a> {
    gateway: &'a DeviceGateway,
    runtime: &'a Handle,
    timeout: Duration,
}

impl Session<'_> {
    /// Says hello until a device answers with a proof that verifies under its registered key;
    /// how the connection ended otherwise (closed, or silent for the idle limit). The wait between hellos
    /// doubles (to [`HELLO_EVERY_MAX`]): a guest forward's connection exists from the board's
    /// power-on, long before its bootloader connects, and every hello sent meanwhile reaches
    /// the device when it does.
    fn hello(
        &self,
        link: &mut HostLink<TcpStream>,
    ) -> anyhow::Result<Result<HelloInfo, SessionEnd>> {
        let options = &self.gateway.options;
        let deadline = Instant::now() + options.idle_limit;
        let mut challenges: Vec<[u8; CHALLENGE_LEN]> = Vec::new();
        let mut every = options.hello_every;
        while Instant::now() < deadline {
            let mut challenge = [0u8; CHALLENGE_LEN];
            OsRng.fill_bytes(&mut challenge);
            if challenges.len() == CHALLENGES_KEPT {
                challenges.remove(0);
            }
            challenges.push(challenge);
            let reply = match link.hello(challenge, every) {
                Ok(reply) => reply,
                Err(LinkError::Timeout { .. }) => {
                    every = (every * 2).min(HELLO_EVERY_MAX);
                    continue;
                }
                Err(LinkError::Closed) => return Ok(Err(SessionEnd::Closed)),
                Err(e) => return Err(e.into()),
            };
            let claimed = reply.claimed;
            let key = self.runtime.block_on(
                self.gateway
                    .registry
                    .device_key(claimed.product_id, &claimed.serial),
            );
            let verified = key.ok().is_some_and(|key| {
                challenges
                    .iter()
                    .any(|c| hello::verify_response(&key, c, &reply.raw).is_ok())
            });
            if verified {
                return Ok(Ok(claimed));
            }
            tracing::warn!(
                serial = %hex::encode(claimed.serial),
                product_id = claimed.product_id,
                "device gateway: a hello that does not verify under the registered device key; ignored"
            );
        }
        Ok(Err(SessionEnd::Idle))
    }

    /// The device's package, relayed, installed and its receipt reported.
    fn deliver(
        &self,
        link: &mut HostLink<TcpStream>,
        device: &HelloInfo,
    ) -> Result<Delivered, LinkError> {
        let serial = hex::encode(device.serial);
        let id = (device.product_id, device.serial);
        let delivery = &self.gateway.updates.delivery;
        let package = match self
            .runtime
            .block_on(delivery.package(device.product_id, &device.serial))
        {
            Ok(package) => package,
            Err(e @ (E::NotFound(_) | E::FailedPrecondition(_))) => {
                tracing::info!(%serial, reason = %e, "device gateway: no package for the device now");
                return Ok(Delivered::NoPackage);
            }
            Err(e) => {
                tracing::warn!(%serial, error = %e, "device gateway: the package could not be made");
                return Ok(Delivered::NoPackage);
            }
        };
        let envelope =
            self.gateway
                .resume
                .envelope(id, &package.campaign_id, package.envelope.clone());
        let relayed = link.relay_package(
            &envelope,
            &package.chunks,
            RelayLimits::default(),
            self.timeout,
        );
        let resumed_at = match relayed {
            Ok(Relayed::Installed { resumed_at, .. }) => resumed_at,
            // Only asked for with limits, which the gateway never sets.
            Ok(Relayed::Halted { .. } | Relayed::Truncated { .. }) => {
                return Ok(Delivered::NoPackage)
            }
            Err(LinkError::Refused { request, code }) => {
                tracing::warn!(%serial, ?request, %code, "device gateway: the device refused its package");
                self.report(device, Vec::new(), code as u32);
                return Ok(Delivered::Refused);
            }
            Err(e) => return Err(e),
        };
        self.gateway.resume.forget(id);
        tracing::info!(
            %serial,
            version = package.version,
            chunks = package.chunks.len(),
            resumed_at,
            "device gateway: package installed"
        );
        let challenge: Option<[u8; receipt::CHALLENGE_LEN]> = package.challenge.try_into().ok();
        match challenge.map(|c| link.status_receipt(c, self.timeout)) {
            Some(Ok(raw)) => self.report(device, raw.to_vec(), 0),
            Some(Err(e)) => {
                tracing::warn!(%serial, error = %e, "device gateway: no receipt after the install")
            }
            None => tracing::warn!(%serial, "device gateway: the package has no receipt challenge"),
        }
        Ok(Delivered::Installed)
    }

    /// The bootloader's receipt said the new OS runs on trial; the OS itself confirms. A fresh
    /// challenge goes down to it over the down-link (it fetches its messages on its data
    /// connection), and its receipt comes back there (`data_stream::tcp`), through
    /// `Updates::report`, so the registry can say `updated` with no host tool.
    fn ask_the_os(&self, device: &HelloInfo) {
        let serial = hex::encode(device.serial);
        let asked = self.runtime.block_on(async {
            let challenge = self
                .gateway
                .updates
                .delivery
                .fresh_challenge(device.product_id, &device.serial)
                .await?;
            self.gateway
                .down
                .send(
                    &Actor::coordinator(),
                    Serial(device.serial),
                    &Outgoing::status_request(challenge),
                )
                .await
        });
        match asked {
            Ok(m) => {
                tracing::info!(%serial, counter = m.counter, "device gateway: the OS is asked for its receipt")
            }
            Err(e) => {
                tracing::warn!(%serial, error = %e, "device gateway: the OS could not be asked for its receipt")
            }
        }
    }

    /// Reports a receipt, or (empty `receipt`) the device's refusal `refused_code`.
    fn report(&self, device: &HelloInfo, receipt: Vec<u8>, refused_code: u32) {
        let req = v1::ReportUpdateRequest {
            product_id: device.product_id,
            serial: device.serial.to_vec(),
            receipt,
            refused_code,
        };
        match self.runtime.block_on(self.gateway.updates.report(req)) {
            Ok(status) => {
                tracing::info!(
                    serial = %hex::encode(device.serial),
                    state = %status.state,
                    os_version = status.os_version,
                    "device gateway: reported"
                );
                if status.state == "in-progress" {
                    self.ask_the_os(device);
                }
            }
            Err(e) => tracing::warn!(
                serial = %hex::encode(device.serial),
                error = %e,
                "device gateway: the report was not recorded"
            ),
        }
    }
}
