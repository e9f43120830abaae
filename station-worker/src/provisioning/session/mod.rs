//! The station's side of one flash-loader session, as a typestate: each step consumes the
//! previous state and returns the next, so the steps can only be taken in the protocol's order
//! (`docs/protocol.md`), and a state cannot be used twice.
//!
//! ```text
//! start ─► Started ─confirm_key─► KeyConfirmed ─send_secrets─► SecretsSent
//!       ─install_bootloader─► Committed ─┬─lock──────────────────────────────► Locked
//!                                        └─run_test_app─► Tested ─lock─► Locked
//!                                                       └► TestFailed (to rework: no lock)
//! ```
//! Any state can [`finish`](FlashLoaderSession::finish) (breakpoint removed, core left halted).
//! The session exists only once the loader's hello arrived and the keys are agreed: there is
//! no session without keys.
//!
//! ```no_run
//! # use flashgate_station::probe::Probe;
//! # use flashgate_station::provisioning::{CertificateIssuer, FlashLoaderSession, OrderPlan, ProvisioningError};
//! fn provision<P: Probe>(probe: &mut P, plan: &OrderPlan, issuer: &dyn CertificateIssuer) -> Result<(), ProvisioningError> {
//!     let timeout = std::time::Duration::from_secs(30);
//!     let session = FlashLoaderSession::start(probe, plan.loader(), timeout)?;
//!     let issued = issuer
//!         .issue("lease", &session.serial(), &session.loader_public())
//!         .expect("a certificate");
//!     let session = session
//!         .confirm_key()?
//!         .send_secrets(plan, &issued)?
//!         .install_bootloader(plan)?
//!         .lock()?;
//!     session.finish()?;
//!     Ok(())
//! }
//! ```
//!
//! Out of order does not compile: the bootloader cannot be sent before the key is confirmed …
//!
//! ```compile_fail
//! # use flashgate_station::probe::Probe;
//! # use flashgate_station::provisioning::{FlashLoaderSession, OrderPlan, ProvisioningError, Started};
//! fn skip_key_confirmation<P: Probe>(
//!     session: FlashLoaderSession<'_, P, Started>,
//!     plan: &OrderPlan,
//! ) -> Result<(), ProvisioningError> {
//!     session.install_bootloader(plan)?; // no such method on `Started`
//!     Ok(())
//! }
//! ```
//!
//! … nor can a board be locked before its bootloader is committed …
//!
//! ```compile_fail
//! # use flashgate_station::probe::Probe;
//! # use flashgate_station::provisioning::{FlashLoaderSession, ProvisioningError, SecretsSent};
//! fn lock_early<P: Probe>(session: FlashLoaderSession<'_, P, SecretsSent>) -> Result<(), ProvisioningError> {
//!     session.lock()?; // no such method on `SecretsSent`
//!     Ok(())
//! }
//! ```
//!
//! … nor a step be taken twice (the state was moved into the next one).
//!
//! ```compile_fail
//! # use flashgate_station::probe::Probe;
//! # use flashgate_station::provisioning::{FlashLoaderSession, ProvisioningError, Started};
//! fn confirm_twice<P: Probe>(session: FlashLoaderSession<'_, P, Started>) -> Result<(), ProvisioningError> {
//!     let _confirmed = session.confirm_key()?;
//!     let _again = session.confirm_key()?; // use of moved value
//!     Ok(())
//! }
//! ```

mod mailbox;

use std::time::{Duration, Instant};

use flashgate_protocol::device_record::{DeviceConfig, DeviceRecord};
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::mailbox::IN_MAX;
use flashgate_protocol::provisioning::messages::{
    Receipt, StationMessage, TargetReply, MAX_IMAGE_CHUNK,
};
use flashgate_protocol::provisioning::station::{StationHandshake, StationSession};
use flashgate_protocol::{ErrorCode, Serial};
use rand::RngCore;
use x25519_dalek::StaticSecret;

pub use self::mailbox::LoaderMailbox;
use super::{
    IssuedCertificate, LoaderImage, OrderPlan, PhaseTimings, ProvisioningError, StationFault,
    TargetFault,
};
use crate::probe::Probe;
use flashgate_protocol::certificate::DeviceCertificate;

/// What the factory test application reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestAppReport {
    /// Failed checks (0 = pass).
    pub failed: u32,
    /// One line per check.
    pub log: String,
}

impl TestAppReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

/// The loader said hello and the session keys are agreed.
pub struct Started;
/// The loader confirmed the session keys.
pub struct KeyConfirmed;
/// The device's sealed key, certificate and configuration are on the target (not yet
/// committed).
pub struct SecretsSent {
    record: DeviceRecordParts,
}
/// The bootloader is committed and its receipt verified.
pub struct Committed {
    receipt: Receipt,
}
/// The factory test application passed.
pub struct Tested {
    receipt: Receipt,
    report: TestAppReport,
}
/// The factory test application failed: the board is not locked (it goes to rework).
pub struct TestFailed {
    receipt: Receipt,
    report: TestAppReport,
}
/// The debug port is locked.
pub struct Locked {
    receipt: Receipt,
}

/// What the receipt's record digest must cover (everything but the device key, which the
/// station never holds), kept between `send_secrets` and the commit.
struct DeviceRecordParts {
    config: DeviceConfig,
    certificate: DeviceCertificate,
}

/// States past the commit: they hold the verified receipt.
pub trait Installed: sealed::Sealed {
    /// The loader's verified receipt.
    fn receipt(&self) -> &Receipt;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Committed {}
    impl Sealed for super::Tested {}
    impl Sealed for super::TestFailed {}
    impl Sealed for super::Locked {}
}

macro_rules! installed {
    ($($state:ty),*) => {$(
        impl Installed for $state {
            fn receipt(&self) -> &Receipt {
                &self.receipt
            }
        }
    )*};
}
installed!(Committed, Tested, TestFailed, Locked);

/// The outcome of the factory test application.
pub enum TestRun<'p, P: Probe + ?Sized> {
    /// Every check passed: the board may be locked.
    Passed(FlashLoaderSession<'p, P, Tested>),
    /// A check failed: the board is left unlocked for rework.
    Failed(FlashLoaderSession<'p, P, TestFailed>),
}

/// A running flash loader on one target, in state `S`.
pub struct FlashLoaderSession<'p, P: Probe + ?Sized, S> {
    mailbox: LoaderMailbox<'p, P>,
    keys: StationSession,
    frame_buf: Vec<u8>,
    state: S,
}

impl<'p, P: Probe + ?Sized> FlashLoaderSession<'p, P, Started> {
    /// Writes and starts the loader with a fresh station key and job nonce, reads its hello and
    /// completes the key agreement.
    pub fn start(
        probe: &'p mut P,
        loader: &LoaderImage,
        step_timeout: Duration,
    ) -> Result<Self, ProvisioningError> {
        let t = Instant::now();
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let handshake = StationHandshake::new(
            StaticSecret::random_from_rng(rand::rngs::OsRng),
            nonce,
            *loader.digest(),
        );
        let spent = t.elapsed();
        let (mut mailbox, hello) =
            LoaderMailbox::boot(probe, loader, &handshake.params().to_bytes(), step_timeout)?;
        let t = Instant::now();
        let keys = handshake
            .complete(&hello)
            .map_err(|code| TargetFault::Unverified {
                what: "loader hello",
                code,
            })?;
        mailbox.add_station_time(spent + t.elapsed());
        Ok(Self {
            mailbox,
            keys,
            frame_buf: vec![0; IN_MAX],
            state: Started,
        })
    }

    /// Key confirmation: the loader proves it derived the same keys (always the first request).
    pub fn confirm_key(
        mut self,
    ) -> Result<FlashLoaderSession<'p, P, KeyConfirmed>, ProvisioningError> {
        let confirm = self.keys.key_confirm();
        self.request("key confirmation", &confirm, ack)?;
        Ok(self.into_state(KeyConfirmed))
    }
}

impl<'p, P: Probe + ?Sized> FlashLoaderSession<'p, P, KeyConfirmed> {
    /// Sends the device's configuration (the keys the plan's bootloader pins), its key as the
    /// coordinator sealed it to this loader run, and its certificate.
    pub fn send_secrets(
        mut self,
        plan: &OrderPlan,
        issued: &IssuedCertificate,
    ) -> Result<FlashLoaderSession<'p, P, SecretsSent>, ProvisioningError> {
        let anchors = plan.anchors();
        let config = DeviceConfig {
            serial: self.serial(),
            product_id: plan.product_id(),
            vendor_public: anchors.vendor_public,
            authority_public: anchors.authority_public,
            rollback_floor: plan.rollback_floor(),
            flags: 0,
        };
        self.request(
            "device secrets",
            &StationMessage::DeviceSecrets {
                config,
                sealed_device_key: &issued.sealed_device_key,
                certificate: issued.certificate,
            },
            ack,
        )?;
        let record = DeviceRecordParts {
            config,
            certificate: issued.certificate,
        };
        Ok(self.into_state(SecretsSent { record }))
    }
}

impl<'p, P: Probe + ?Sized> FlashLoaderSession<'p, P, SecretsSent> {
    /// Sends the vendor-signed bootloader (header, then the body in chunks), commits, and
    /// verifies the receipt against what was sent.
    pub fn install_bootloader(
        mut self,
        plan: &OrderPlan,
    ) -> Result<FlashLoaderSession<'p, P, Committed>, ProvisioningError> {
        let signed = self.upload(Upload::Bootloader, plan.bootloader(), plan.chunk_size())?;
        let receipt = self.request("commit", &StationMessage::Commit, |reply| match reply {
            TargetReply::Receipt(receipt) => Some(receipt),
            _ => None,
        })?;
        let parts = &self.state.record;
        let config = parts.config;
        // The key is left out of the receipt's digest (`public_digest`); the loader checked it
        // against the certificate's key commitment.
        let record_digest = DeviceRecord {
            config,
            device_key: [0; 32],
            bootloader_version: signed.header.version,
            bootloader_size: signed.header.body_size,
            bootloader_digest: signed.header.body_digest,
            certificate: parts.certificate,
        }
        .public_digest();
        if receipt.serial != config.serial
            || receipt.bootloader_digest != signed.header.body_digest
            || receipt.record_digest != record_digest
            || receipt.bootloader_version != signed.header.version
        {
            return Err(receipt_mismatch());
        }
        Ok(self.into_state(Committed { receipt }))
    }
}

impl<'p, P: Probe + ?Sized> FlashLoaderSession<'p, P, Committed> {
    /// Sends the vendor-signed factory test application; the loader verifies and runs it.
    pub fn run_test_app(
        mut self,
        signed_app: &[u8],
        chunk_size: usize,
    ) -> Result<TestRun<'p, P>, ProvisioningError> {
        self.upload(Upload::TestApp, signed_app, chunk_size)?;
        let report = self.request(
            "test run",
            &StationMessage::RunTestApp,
            |reply| match reply {
                TargetReply::TestResult { failed, log } => Some(TestAppReport {
                    failed,
                    log: String::from_utf8_lossy(log).into_owned(),
                }),
                _ => None,
            },
        )?;
        let receipt = self.state.receipt;
        Ok(if report.passed() {
            TestRun::Passed(self.into_state(Tested { receipt, report }))
        } else {
            TestRun::Failed(self.into_state(TestFailed { receipt, report }))
        })
    }
}

/// States from which the debug port may be locked: committed (no factory test in the order) or
/// tested and passed. Not `TestFailed`: that board goes to rework.
pub trait Lockable: Installed {}
impl Lockable for Committed {}
impl Lockable for Tested {}

impl<'p, P: Probe + ?Sized, S: Lockable> FlashLoaderSession<'p, P, S> {
    /// Asks the loader to lock the debug port; the loader answers with the board's serial.
    pub fn lock(mut self) -> Result<FlashLoaderSession<'p, P, Locked>, ProvisioningError> {
        let serial = self.serial();
        self.request(
            "debug lock",
            &StationMessage::LockDebugPort,
            |reply| match reply {
                TargetReply::Locked { serial: s } if s == serial => Some(()),
                _ => None,
            },
        )?;
        let receipt = *self.state.receipt();
        Ok(self.into_state(Locked { receipt }))
    }
}

impl<P: Probe + ?Sized, S: TestOutcome> FlashLoaderSession<'_, P, S> {
    /// What the factory test application reported.
    pub fn test_report(&self) -> &TestAppReport {
        self.state.report()
    }
}

/// States that ran the factory test application.
pub trait TestOutcome: sealed::Sealed {
    /// Its report.
    fn report(&self) -> &TestAppReport;
}

impl TestOutcome for Tested {
    fn report(&self) -> &TestAppReport {
        &self.report
    }
}

impl TestOutcome for TestFailed {
    fn report(&self) -> &TestAppReport {
        &self.report
    }
}

impl<P: Probe + ?Sized, S: Installed> FlashLoaderSession<'_, P, S> {
    /// The loader's verified receipt.
    pub fn receipt(&self) -> &Receipt {
        self.state.receipt()
    }
}

impl<'p, P: Probe + ?Sized, S> FlashLoaderSession<'p, P, S> {
    /// The board's serial, from the loader hello.
    pub fn serial(&self) -> Serial {
        self.keys.serial()
    }

    /// The loader's ephemeral X25519 key, from its hello: the coordinator seals the device key
    /// to it.
    pub fn loader_public(&self) -> [u8; 32] {
        self.keys.loader_public()
    }

    /// Time spent so far.
    pub fn timings(&self) -> PhaseTimings {
        self.mailbox.timings()
    }

    /// Ends the session: the breakpoint is removed and the core left halted.
    pub fn finish(self) -> Result<PhaseTimings, ProvisioningError> {
        self.mailbox.finish()
    }

    fn into_state<T>(self, state: T) -> FlashLoaderSession<'p, P, T> {
        FlashLoaderSession {
            mailbox: self.mailbox,
            keys: self.keys,
            frame_buf: self.frame_buf,
            state,
        }
    }

    /// Sends a vendor-signed image: its header, then its body in chunks. Returns the header.
    fn upload(
        &mut self,
        upload: Upload,
        image: &[u8],
        chunk_size: usize,
    ) -> Result<SignedImageHeader, ProvisioningError> {
        let (signed, body) = split_signed(image).map_err(|code| match upload {
            Upload::Bootloader => StationFault::BadBootloaderImage(code),
            Upload::TestApp => StationFault::BadTestApp(code),
        })?;
        let header = signed.to_bytes();
        let (request, begin) = match upload {
            Upload::Bootloader => (
                "bootloader header",
                StationMessage::BeginBootloader {
                    signed_header: &header,
                },
            ),
            Upload::TestApp => (
                "test app header",
                StationMessage::BeginTestApp {
                    signed_header: &header,
                },
            ),
        };
        self.request(request, &begin, ack)?;
        let chunk = chunk_size.clamp(64, MAX_IMAGE_CHUNK);
        for (i, data) in body.chunks(chunk).enumerate() {
            let offset = (i * chunk) as u32;
            let (request, msg) = match upload {
                Upload::Bootloader => ("image data", StationMessage::ImageData { offset, data }),
                Upload::TestApp => (
                    "test app data",
                    StationMessage::TestAppData { offset, data },
                ),
            };
            let before = self.mailbox.timings();
            self.request(request, &msg, ack)?;
            if matches!(upload, Upload::Bootloader) {
                self.mailbox.count_image_frame(&before, data.len());
            }
        }
        Ok(signed)
    }

    /// Seals `msg`, exchanges it with the loader and opens the reply; `expect` picks the reply
    /// this request must get (anything else is refused).
    fn request<T>(
        &mut self,
        request: &'static str,
        msg: &StationMessage<'_>,
        expect: impl FnOnce(TargetReply<'_>) -> Option<T>,
    ) -> Result<T, ProvisioningError> {
        let t = Instant::now();
        let n =
            self.keys
                .seal(msg, &mut self.frame_buf)
                .map_err(|code| TargetFault::Unverified {
                    what: "request (it does not fit a frame)",
                    code,
                })?;
        self.mailbox.add_station_time(t.elapsed());
        let mut out = self.mailbox.exchange(request, &self.frame_buf[..n])?;
        let t = Instant::now();
        let reply = self
            .keys
            .open(&mut out)
            .map_err(|code| TargetFault::Unverified {
                what: "reply",
                code,
            })?;
        let answer = expect(reply).ok_or(TargetFault::Unverified {
            what: "reply",
            code: ErrorCode::UnexpectedMessage,
        });
        self.mailbox.add_station_time(t.elapsed());
        Ok(answer?)
    }
}

/// Which image [`FlashLoaderSession::upload`] sends.
#[derive(Clone, Copy)]
enum Upload {
    Bootloader,
    TestApp,
}

/// The reply every step but the last of each phase gets.
fn ack(reply: TargetReply<'_>) -> Option<()> {
    matches!(reply, TargetReply::Ack { .. }).then_some(())
}

fn receipt_mismatch() -> ProvisioningError {
    TargetFault::Unverified {
        what: "receipt",
        code: ErrorCode::ReceiptMismatch,
    }
    .into()
}

/// The signed header and the body of a vendor-signed image, checked for length.
fn split_signed(image: &[u8]) -> Result<(SignedImageHeader, &[u8]), ErrorCode> {
    let signed = SignedImageHeader::parse(image)?;
    let body = image.get(SIGNED_HEADER_LEN..).unwrap_or_default();
    if body.len() != signed.header.body_size as usize {
        return Err(ErrorCode::ImageIncomplete);
    }
    Ok((signed, body))
}
