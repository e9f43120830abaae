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

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::messages::MAX_TEST_LOG;
use super::messages::{Receipt, StationMessage, TargetReply};
use super::{LoaderHello, ParamBlock};
use crate::codec::Codec;
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::flash::LoaderPlatform;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader};
use crate::key_schedule::{SessionKeys, Transcript};
use crate::layout::{
    BOOTLOADER_BASE, BOOTLOADER_MAX, DEVICE_RECORD_ADDR, TEST_APP_ADDR, TEST_APP_MAX,
};
use crate::sealed_frame;
use crate::{ErrorCode, Serial};

/// Bytes at the start of the bootloader held back until commit (initial SP, reset vector).
const VECTOR_HEAD_LEN: usize = 8;

/// What the station configured: kept in RAM only until the record is written.
#[derive(Clone)]
struct Secrets {
    config: DeviceConfig,
    device_key: Zeroizing<[u8; 32]>,
}

struct BootloaderTransfer {
    header: ImageHeader,
    hasher: BodyHasher,
    vector_head: [u8; VECTOR_HEAD_LEN],
}

struct TestAppTransfer {
    header: ImageHeader,
    hasher: BodyHasher,
}

/// Where the session stands; each state holds exactly what its next steps need. Leaving a
/// state drops its data (the device key is wiped on drop).
enum State {
    AwaitKeyConfirm,
    AwaitDeviceSecrets,
    AwaitBootloader(Secrets),
    /// The bootloader region is erased up to `transfer.header.body_size` and being programmed.
    ReceivingBootloader(Secrets, BootloaderTransfer),
    /// Record and bootloader written: bootable. The configuration still names the vendor key
    /// a test app must be signed with.
    Committed(DeviceConfig),
    ReceivingTestApp(TestAppTransfer),
    TestDone,
    Locked,
    Failed,
}

/// The loader's session with one station.
pub struct LoaderSession {
    keys: SessionKeys,
    serial: Serial,
    recv_seq: u32,
    send_seq: u32,
    state: State,
}

impl LoaderSession {
    /// Starts a session from the station's parameter block and writes the loader hello into
    /// `hello_out`. `ephemeral_secret` must be fresh entropy for every run.
    pub fn start(
        params: &[u8],
        serial: Serial,
        loader_digest: [u8; 32],
        ephemeral_secret: [u8; 32],
        hello_out: &mut [u8],
    ) -> Result<(Self, usize), ErrorCode> {
        let params = ParamBlock::read_bytes(params)?;
        let secret = StaticSecret::from(ephemeral_secret);
        let loader_public = PublicKey::from(&secret).to_bytes();
        let transcript = Transcript {
            station_public: params.station_public,
            loader_public,
            serial,
            job_nonce: params.job_nonce,
            loader_digest,
        };
        let keys = SessionKeys::derive(&secret, &params.station_public, &transcript)?;
        let hello = LoaderHello {
            loader_public,
            serial,
            loader_digest,
        };
        let n = hello.encode_into(hello_out)?;
        Ok((
            Self {
                keys,
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
            State::Committed(_) | State::ReceivingTestApp(_) | State::TestDone | State::Locked
        )
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
        if matches!(self.state, State::Failed) {
            return Err(ErrorCode::SessionAborted);
        }
        match self.step(frame, platform, reply_out) {
            Ok(n) => Ok(n),
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
            (State::AwaitDeviceSecrets, StationMessage::DeviceSecrets { config, device_key }) => {
                if config.serial != self.serial {
                    return Err(ErrorCode::WrongSerial);
                }
                self.state = State::AwaitBootloader(Secrets {
                    config,
                    device_key: Zeroizing::new(*device_key),
                });
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
            (State::ReceivingBootloader(_, t), StationMessage::ImageData { offset, data }) => {
                t.write(offset, data, platform)?;
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
                if offset != t.hasher.received() {
                    return Err(ErrorCode::BadOffset);
                }
                t.hasher.update(data)?;
                platform.load_test_app(offset, data)?;
                ack(0)
            }
            (State::ReceivingTestApp(t), StationMessage::RunTestApp) => {
                t.hasher.clone().finish(&t.header.body_digest)?;
                let failed = platform.run_test_app(&mut report)?;
                let log_len =
                    u32::from_le_bytes([report[4], report[5], report[6], report[7]]) as usize;
                self.state = State::TestDone;
                TargetReply::TestResult {
                    failed,
                    log: &report[8..8 + log_len.min(MAX_TEST_LOG)],
                }
            }
            (State::Committed(_) | State::TestDone, StationMessage::LockDebugPort) => {
                platform.lock_debug_port()?;
                self.state = State::Locked;
                TargetReply::Locked {
                    serial: self.serial,
                }
            }
            _ => return Err(ErrorCode::UnexpectedMessage),
        };
        self.seal_reply(&reply, reply_out)
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
        if !data.is_empty() {
            platform.program(BOOTLOADER_BASE + at as u32, data)?;
        }
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
    let record = DeviceRecord {
        config: secrets.config,
        device_key: *secrets.device_key,
        bootloader_version: t.header.version,
        bootloader_size: t.header.body_size,
        bootloader_digest: digest,
    };
    platform.program(DEVICE_RECORD_ADDR, &record.to_bytes())?;
    platform.program(BOOTLOADER_BASE, &t.vector_head)?;
    Ok(Receipt {
        serial,
        bootloader_digest: digest,
        record_digest: record.digest(),
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
        hasher: BodyHasher::new(header.body_size),
    })
}
