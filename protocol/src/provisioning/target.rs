//! The flash loader's side of provisioning: one state machine, driven frame by frame.
//!
//! The firmware only moves bytes between the mailbox and [`LoaderSession::handle`]; every
//! decision (ordering, verification, what gets written where and when) is made here, where
//! host tests exercise it against [`RamFlash`](crate::flash::RamFlash).
//!
//! Nothing becomes bootable before `Commit` has checked the whole image: the device-record page
//! is erased when a bootloader transfer begins, and the first 8 bytes of the bootloader (initial
//! stack pointer and reset vector) are kept in RAM and programmed last. On any error the session
//! is over, the secrets are wiped and the partly written bootloader is erased.
//!
//! `DeviceSecrets` carries the device key sealed by the coordinator to this run's ephemeral key
//! (`device_key_transport`), and the chip's certificate. The loader opens the key
//! ([`ErrorCode::WrongDevice`]), checks the configuration names this chip
//! ([`ErrorCode::WrongSerial`]) and that the certificate names this chip, this product and this
//! key ([`ErrorCode::CertificateMismatch`]). It does not verify the certificate's signature: the
//! loader is code the station chooses, so only the bootloader's check at every boot stops
//! anyone. While the bootloader body arrives, the loader reads the trust anchors the (signed)
//! bootloader pins and refuses configuration keys that differ
//! ([`ErrorCode::TrustAnchorMismatch`]) before the rest is written.
//!
//! The session ends (keys wiped, every later frame [`ErrorCode::SessionAborted`]) on any error,
//! after the debug port is locked, and after a failed factory test (that board is not locked).

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::messages::MAX_TEST_LOG;
use super::messages::{Receipt, StationMessage, TargetReply};
use super::{LoaderHello, ParamBlock};
use crate::certificate::DeviceCertificate;
use crate::codec::Codec;
use crate::device_key_transport;
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::flash::LoaderPlatform;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader};
use crate::key_schedule::{SessionKeys, Transcript};
use crate::layout::{
    BOOTLOADER_BASE, BOOTLOADER_MAX, DEVICE_RECORD_ADDR, TEST_APP_ADDR, TEST_APP_MAX,
    TRUST_ANCHORS_OFFSET,
};
use crate::sealed_frame;
use crate::trust_anchors::{TrustAnchors, ANCHORS_LEN};
use crate::{ErrorCode, Serial};

/// Bytes at the start of the bootloader held back until commit (initial SP, reset vector).
const VECTOR_HEAD_LEN: usize = 8;

/// What the station configured: kept in RAM only until the record is written.
#[derive(Clone)]
struct Secrets {
    config: DeviceConfig,
    device_key: Zeroizing<[u8; 32]>,
    certificate: DeviceCertificate,
}

/// Where the anchor block lies in a bootloader body (past the held-back vector head).
const ANCHORS_AT: usize = TRUST_ANCHORS_OFFSET as usize;
const _: () = assert!(ANCHORS_AT >= VECTOR_HEAD_LEN);

struct BootloaderTransfer {
    header: ImageHeader,
    hasher: BodyHasher,
    vector_head: [u8; VECTOR_HEAD_LEN],
    /// The trust-anchor block as it arrives (compared once complete).
    anchors: [u8; ANCHORS_LEN],
    anchors_checked: bool,
}

struct TestAppTransfer {
    header: ImageHeader,
    /// Bytes loaded into the test app's RAM so far.
    received: u32,
}

/// Where the session stands; each state holds exactly what its next steps need. Leaving a
/// state drops its data (the device key is wiped on drop).
#[allow(
    clippy::large_enum_variant,
    reason = "no heap on the loader; the one state lives in the session"
)]
enum State {
    AwaitKeyConfirm,
    AwaitDeviceSecrets,
    /// (The ephemeral secret that opens the device key lives beside the state: see
    /// [`LoaderSession::ephemeral`].)
    AwaitBootloader(Secrets),
    /// The bootloader region is erased up to `transfer.header.body_size` and being programmed.
    ReceivingBootloader(Secrets, BootloaderTransfer),
    /// Record and bootloader written: bootable. The configuration still names the vendor key
    /// a test app must be signed with.
    Committed(DeviceConfig),
    ReceivingTestApp(TestAppTransfer),
    TestDone,
    /// Locked, or the factory test failed: the session is over, its keys are wiped.
    Ended,
    Failed,
}

/// The loader's session with one station.
pub struct LoaderSession {
    keys: SessionKeys,
    /// This run's X25519 secret, kept until it opened the device key (then dropped: the
    /// type wipes itself).
    ephemeral: Option<StaticSecret>,
    /// Its public key (from the hello), so opening the device key costs no second keygen.
    loader_public: [u8; 32],
    serial: Serial,
    recv_seq: u32,
    send_seq: u32,
    state: State,
}

impl LoaderSession {
    /// Starts a session from the station's parameter block and writes the loader hello into
    /// `hello_out`. `ephemeral_secret` must be fresh entropy for every run. The loader's
    /// identity in the transcript is the digest the station states in the block: the loader
    /// does not hash itself (a loader can report any digest; see `docs/protocol.md` §4).
    pub fn start(
        params: &[u8],
        serial: Serial,
        ephemeral_secret: [u8; 32],
        hello_out: &mut [u8],
    ) -> Result<(Self, usize), ErrorCode> {
        let params = ParamBlock::read_bytes(params)?;
        let mut ephemeral_secret = Zeroizing::new(ephemeral_secret);
        let secret = StaticSecret::from(*ephemeral_secret);
        ephemeral_secret.zeroize();
        let loader_public = PublicKey::from(&secret).to_bytes();
        let transcript = Transcript {
            station_public: params.station_public,
            loader_public,
            serial,
            job_nonce: params.job_nonce,
            loader_digest: params.loader_digest,
        };
        let keys = SessionKeys::derive(&secret, &params.station_public, &transcript)?;
        let hello = LoaderHello {
            loader_public,
            serial,
            loader_digest: params.loader_digest,
        };
        let n = hello.encode_into(hello_out)?;
        Ok((
            Self {
                keys,
                ephemeral: Some(secret),
                loader_public,
                serial,
                recv_seq: 0,
                send_seq: 0,
                state: State::AwaitKeyConfirm,
            },
            n,
        ))
    }

    /// True once the bootloader and device record are written and bootable.
    pub fn is_committed(&self) -> bool {
        matches!(
            self.state,
            State::Committed(_) | State::ReceivingTestApp(_) | State::TestDone | State::Ended
        )
    }

    /// True once the session is over (an error, the lock, a failed factory test): its keys
    /// and secrets are wiped and it answers nothing more.
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Failed | State::Ended)
    }

    /// Handles one sealed frame from the station (decrypted in place in `frame`) and writes the
    /// sealed reply into `reply_out`, returning its length. After an error the session refuses
    /// everything with [`ErrorCode::SessionAborted`].
    pub fn handle<P: LoaderPlatform>(
        &mut self,
        frame: &mut [u8],
        platform: &mut P,
        reply_out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        if self.is_over() {
            return Err(ErrorCode::SessionAborted);
        }
        match self.step(frame, platform, reply_out) {
            Ok(n) => {
                if matches!(self.state, State::Ended) {
                    self.wipe();
                }
                Ok(n)
            }
            Err(e) => {
                self.abort(platform);
                Err(e)
            }
        }
    }

    /// Ends the session: the secrets go with the state they were in.
    fn abort<P: LoaderPlatform>(&mut self, platform: &mut P) {
        if let State::ReceivingBootloader(_, transfer) =
            core::mem::replace(&mut self.state, State::Failed)
        {
            // Do not leave plaintext bootloader pieces readable through the still-open debug
            // port. Best effort: the record page is already erased, so nothing boots anyway.
            let _ = platform.erase_range(BOOTLOADER_BASE, transfer.header.body_size);
        }
        self.wipe();
    }

    /// Wipes the session keys and the ephemeral secret (the device key went with the state).
    /// Whoever gets the board after this session — a rework bench with the port still open —
    /// finds none of them in the session.
    fn wipe(&mut self) {
        self.keys.zeroize();
        self.ephemeral = None;
    }

    fn step<P: LoaderPlatform>(
        &mut self,
        frame: &mut [u8],
        platform: &mut P,
        reply_out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        let opened =
            sealed_frame::open_in_place(&self.keys.station_to_target, self.recv_seq, frame);
        let range = match opened {
            Err(ErrorCode::BadTag) if matches!(self.state, State::AwaitKeyConfirm) => {
                return Err(ErrorCode::KeyConfirmationFailed)
            }
            other => other?,
        };
        let seq = self.recv_seq;
        self.recv_seq += 1;
        let mut report = [0u8; 8 + MAX_TEST_LOG];
        let ack = |bytes_programmed| TargetReply::Ack {
            seq,
            bytes_programmed,
        };
        // Each arm changes the state only once its step succeeded, so a failure is handled in
        // the state that failed (`abort` erases a partly written bootloader).
        let reply = match (&mut self.state, StationMessage::read_bytes(&frame[range])?) {
            (State::AwaitKeyConfirm, StationMessage::KeyConfirm { transcript_hash }) => {
                if transcript_hash != self.keys.transcript_hash {
                    return Err(ErrorCode::KeyConfirmationFailed);
                }
                self.state = State::AwaitDeviceSecrets;
                ack(0)
            }
            (
                State::AwaitDeviceSecrets,
                StationMessage::DeviceSecrets {
                    config,
                    sealed_device_key,
                    certificate,
                },
            ) => {
                let secrets = self.open_secrets(config, sealed_device_key, certificate)?;
                self.state = State::AwaitBootloader(secrets);
                ack(0)
            }
            (
                State::AwaitBootloader(secrets),
                StationMessage::BeginBootloader { signed_header },
            ) => {
                let transfer = begin_bootloader(&secrets.config, signed_header, platform)?;
                self.state = State::ReceivingBootloader(secrets.clone(), transfer);
                ack(0)
            }
            (
                State::ReceivingBootloader(secrets, t),
                StationMessage::ImageData { offset, data },
            ) => {
                t.write(offset, data, platform)?;
                t.check_anchors(&secrets.config)?;
                ack(t.hasher.received())
            }
            (State::ReceivingBootloader(secrets, t), StationMessage::Commit) => {
                let receipt = commit(self.serial, secrets, t, platform)?;
                self.state = State::Committed(secrets.config);
                TargetReply::Receipt(receipt)
            }
            (State::Committed(config), StationMessage::BeginTestApp { signed_header }) => {
                let transfer = begin_test_app(config, signed_header)?;
                self.state = State::ReceivingTestApp(transfer);
                ack(0)
            }
            (State::ReceivingTestApp(t), StationMessage::TestAppData { offset, data }) => {
                if offset != t.received {
                    return Err(ErrorCode::BadOffset);
                }
                let end = offset
                    .checked_add(data.len() as u32)
                    .filter(|end| *end <= t.header.body_size)
                    .ok_or(ErrorCode::ImageTooLarge)?;
                platform.load_test_app(offset, data)?;
                t.received = end;
                ack(0)
            }
            (State::ReceivingTestApp(t), StationMessage::RunTestApp) => {
                // Hashed from the RAM it runs from, right before it is called: bytes changed
                // in RAM after they arrived (between two turns of the debug link) are refused.
                let mut hasher = BodyHasher::new(t.header.body_size);
                hasher.update(platform.test_app_in_ram(t.received)?)?;
                hasher.finish(&t.header.body_digest)?;
                let failed = platform.run_test_app(&mut report)?;
                let log_len =
                    u32::from_le_bytes([report[4], report[5], report[6], report[7]]) as usize;
                // A board that failed its test is not locked: its session ends here.
                self.state = if failed == 0 {
                    State::TestDone
                } else {
                    State::Ended
                };
                TargetReply::TestResult {
                    failed,
                    log: &report[8..8 + log_len.min(MAX_TEST_LOG)],
                }
            }
            (State::Committed(_) | State::TestDone, StationMessage::LockDebugPort) => {
                platform.lock_debug_port()?;
                self.state = State::Ended;
                TargetReply::Locked {
                    serial: self.serial,
                }
            }
            _ => return Err(ErrorCode::UnexpectedMessage),
        };
        self.seal_reply(&reply, reply_out)
    }

    /// Opens the device key sealed to this run and checks the configuration and certificate
    /// against this chip and that key; the ephemeral secret is gone afterwards, whatever the
    /// outcome.
    fn open_secrets(
        &mut self,
        config: DeviceConfig,
        sealed_device_key: &[u8; device_key_transport::SEALED_DEVICE_KEY_LEN],
        certificate: DeviceCertificate,
    ) -> Result<Secrets, ErrorCode> {
        let ephemeral = self.ephemeral.take().ok_or(ErrorCode::UnexpectedMessage)?;
        let device_key = device_key_transport::open_with_public(
            &ephemeral,
            &self.loader_public,
            &self.serial,
            &certificate,
            sealed_device_key,
        )?;
        drop(ephemeral);
        if config.serial != self.serial {
            return Err(ErrorCode::WrongSerial);
        }
        certificate.check_binding(&self.serial, config.product_id, &device_key)?;
        Ok(Secrets {
            config,
            device_key,
            certificate,
        })
    }

    fn seal_reply(&mut self, reply: &TargetReply<'_>, out: &mut [u8]) -> Result<usize, ErrorCode> {
        let body = out
            .get_mut(sealed_frame::HEADER_LEN..)
            .ok_or(ErrorCode::BadLength)?;
        let n = reply.encode_into(body)?;
        let len = sealed_frame::seal_in_place(&self.keys.target_to_station, self.send_seq, out, n)?;
        self.send_seq += 1;
        Ok(len)
    }
}

/// The header of a signed image for `kind`, checked against the configuration: vendor
/// signature, kind, product, load address, size, floor.
fn verified_header(
    config: &DeviceConfig,
    signed_header: &[u8],
    kind: ImageKind,
    load_addr: u32,
    max_size: u32,
    floor: u32,
) -> Result<ImageHeader, ErrorCode> {
    let signed = SignedImageHeader::parse(signed_header)?;
    let header = *signed.verify(&config.vendor_public)?;
    SignedImageHeader::check_fits(&header, kind, config.product_id, load_addr, max_size, floor)?;
    Ok(header)
}

/// Checks the signed bootloader header, invalidates what was installed (record first) and
/// erases the bootloader region.
fn begin_bootloader<P: LoaderPlatform>(
    config: &DeviceConfig,
    signed_header: &[u8],
    platform: &mut P,
) -> Result<BootloaderTransfer, ErrorCode> {
    let header = verified_header(
        config,
        signed_header,
        ImageKind::Bootloader,
        BOOTLOADER_BASE,
        BOOTLOADER_MAX,
        config.rollback_floor,
    )?;
    if (header.body_size as usize) < VECTOR_HEAD_LEN {
        return Err(ErrorCode::BadLength);
    }
    platform.erase_page(DEVICE_RECORD_ADDR)?;
    platform.erase_range(BOOTLOADER_BASE, header.body_size)?;
    Ok(BootloaderTransfer {
        header,
        hasher: BodyHasher::new(header.body_size),
        vector_head: [0xFF; VECTOR_HEAD_LEN],
        anchors: [0; ANCHORS_LEN],
        anchors_checked: false,
    })
}

impl BootloaderTransfer {
    /// Hashes and programs the next piece; the vector head stays in RAM until commit.
    fn write<P: LoaderPlatform>(
        &mut self,
        offset: u32,
        data: &[u8],
        platform: &mut P,
    ) -> Result<(), ErrorCode> {
        if offset != self.hasher.received() {
            return Err(ErrorCode::BadOffset);
        }
        self.hasher.update(data)?;
        let mut data = data;
        let mut at = offset as usize;
        if at < VECTOR_HEAD_LEN {
            let n = (VECTOR_HEAD_LEN - at).min(data.len());
            self.vector_head[at..at + n].copy_from_slice(&data[..n]);
            data = &data[n..];
            at += n;
        }
        // Keep the trust-anchor block's bytes as they pass (it lies past the vector head).
        let from = at.max(ANCHORS_AT);
        let to = (at + data.len()).min(ANCHORS_AT + ANCHORS_LEN);
        if from < to {
            self.anchors[from - ANCHORS_AT..to - ANCHORS_AT]
                .copy_from_slice(&data[from - at..to - at]);
        }
        if !data.is_empty() {
            platform.program(BOOTLOADER_BASE + at as u32, data)?;
        }
        Ok(())
    }

    /// Once the whole anchor block has arrived: the keys the bootloader pins must be the
    /// configuration's (the header's signature was checked under the configuration's vendor
    /// key, so it is then checked under the pinned one).
    fn check_anchors(&mut self, config: &DeviceConfig) -> Result<(), ErrorCode> {
        if self.anchors_checked || (self.hasher.received() as usize) < ANCHORS_AT + ANCHORS_LEN {
            return Ok(());
        }
        let pinned =
            TrustAnchors::read_bytes(&self.anchors).map_err(|_| ErrorCode::NoTrustAnchors)?;
        if pinned.vendor_public != config.vendor_public
            || pinned.authority_public != config.authority_public
        {
            return Err(ErrorCode::TrustAnchorMismatch);
        }
        self.anchors_checked = true;
        Ok(())
    }
}

/// Checks the whole body, writes the device record, then the vector head: only now is the
/// bootloader bootable.
fn commit<P: LoaderPlatform>(
    serial: Serial,
    secrets: &Secrets,
    t: &BootloaderTransfer,
    platform: &mut P,
) -> Result<Receipt, ErrorCode> {
    let digest = t.hasher.clone().finish(&t.header.body_digest)?;
    if !t.anchors_checked {
        // Too short to carry the block the bootloader must pin.
        return Err(ErrorCode::NoTrustAnchors);
    }
    let record = DeviceRecord {
        config: secrets.config,
        device_key: *secrets.device_key,
        bootloader_version: t.header.version,
        bootloader_size: t.header.body_size,
        bootloader_digest: digest,
        certificate: secrets.certificate,
    };
    platform.program(
        DEVICE_RECORD_ADDR,
        &zeroize::Zeroizing::new(record.to_bytes())[..],
    )?;
    platform.program(BOOTLOADER_BASE, &t.vector_head)?;
    Ok(Receipt {
        serial,
        bootloader_digest: digest,
        record_digest: record.public_digest(),
        bootloader_version: t.header.version,
    })
}

fn begin_test_app(
    config: &DeviceConfig,
    signed_header: &[u8],
) -> Result<TestAppTransfer, ErrorCode> {
    let header = verified_header(
        config,
        signed_header,
        ImageKind::TestApp,
        TEST_APP_ADDR,
        TEST_APP_MAX,
        0,
    )?;
    Ok(TestAppTransfer {
        header,
        received: 0,
    })
}
